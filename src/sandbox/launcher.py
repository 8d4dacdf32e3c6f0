"""The launcher: the first process of every sandboxed run, inside the jail (or as the bare subprocess).

The host runs it as `python -I -S -c <this file's source> <json spec>`, so it may use the standard library only.
It forks the solution, applies the per-process limits in the child and, as root, drops the child to a fresh
unprivileged uid shown as 65534 inside its own user namespace (which also makes RLIMIT_NPROC count this run's
processes only: the kernel never applies RLIMIT_NPROC to uid 0). As the child subreaper it inherits every
orphan (double-forked or setsid daemons included) and kills them all once the solution's main process has
exited, then reports the exit status and resource usage as JSON lines on the report fd.

Spec keys: argv, cwd, report_fd, rlimits ({"RLIMIT_CPU": [soft, hard], ...}; lowered only, never raised),
nproc (RLIMIT_NPROC, applied after the user namespace exists), drop_to ([uid, gid] or null), inner_id (65534).
"""

import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUSER = 0x10000000


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _report(fd, **data):
    # one line, far below PIPE_BUF: atomic even if the child's line is written concurrently
    try:
        os.write(fd, (json.dumps(data) + "\n").encode())
    except OSError:
        pass


def _limit(name, value):
    """Lower a limit to `value` (an int, or [soft, hard]); never above the inherited hard limit."""
    res = getattr(resource, name, None)
    if res is None or value is None:
        return
    soft, hard = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    _, current = resource.getrlimit(res)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(res, (soft, hard))


def _enter_user_namespace(libc, uid, gid, inner_id):
    """Map this (already unprivileged) process to `inner_id` in a new user namespace; False if not allowed."""
    # setuid made the process non-dumpable, which makes /proc/self/*_map root-owned: restore it first
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    if libc.unshare(CLONE_NEWUSER) != 0:
        return False
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{inner_id} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{inner_id} {gid} 1")
    except OSError:
        return False
    return True


def _child(spec, libc):
    report_fd = spec["report_fd"]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    os.setpgid(0, 0)  # its own process group, so that a kill of the group reaches the whole tree on macOS too
    userns = None
    drop = spec.get("drop_to")
    if drop:
        uid, gid = int(drop[0]), int(drop[1])
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # every capability is gone from here on
        userns = libc is not None and _enter_user_namespace(libc, uid, gid, int(spec.get("inner_id", 65534)))
    if libc is not None:
        # set after the uid change, which clears it: the solution dies with the launcher
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for name, value in spec.get("rlimits", {}).items():
        _limit(name, value)
    _limit("RLIMIT_NPROC", spec.get("nproc"))
    _report(report_fd, child=True, userns=userns, uid=os.getuid())
    os.close(report_fd)
    os.chdir(spec["cwd"])
    try:
        os.execv(spec["argv"][0], spec["argv"])
    except OSError as err:
        os.write(2, f"pipesynth sandbox: cannot execute {spec['argv'][0]}: {err}\n".encode())
        os._exit(127)


def _children():
    """Pids of this process's direct children (Linux /proc); empty where /proc is unavailable."""
    pids = set()
    me = os.getpid()
    try:
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        return pids
    except OSError:
        pass
    try:  # kernels without CONFIG_PROC_CHILDREN: scan for our ppid
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return pids
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == me:
                pids.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _kill_leftovers(child_pgid, linux):
    """Kill and reap every remaining descendant (orphans are reparented to us, the subreaper)."""
    if not linux:
        # no subreaper outside Linux: the child's process group is the best reach (setsid escapes it).
        # Not done on Linux, where the group id could already belong to an unrelated process group.
        try:
            os.killpg(child_pgid, signal.SIGKILL)
        except OSError:
            pass
    while True:
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.wait4(-1, 0)
        except ChildProcessError:
            return


def main():
    spec = json.loads(sys.argv[1])
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # host gone -> clean up like a timeout
    state = {"child": None, "terminated": None}

    def on_signal(signum, frame):
        state["terminated"] = signum
        if state["child"] is not None:
            try:
                os.kill(state["child"], signal.SIGKILL)
            except OSError:
                pass

    # installed before the fork, so a timeout that comes early is never lost (the child resets them)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    child = os.fork()
    if child == 0:
        try:
            _child(spec, libc)
        except BaseException as err:  # noqa: BLE001 - report any setup failure, then never return into main()
            os.write(2, f"pipesynth sandbox: launcher setup failed: {err!r}\n".encode())
        os._exit(126)
    state["child"] = child
    if state["terminated"] is not None:
        on_signal(state["terminated"], None)
    status = None
    while status is None:
        try:
            pid, wstatus, _ = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            status = wstatus
    _kill_leftovers(child, libc is not None)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    maxrss_kb = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    _report(
        spec["report_fd"],
        exit_code=os.waitstatus_to_exitcode(status) if status is not None else None,
        maxrss_kb=maxrss_kb,
        cpu_s=usage.ru_utime + usage.ru_stime,
        terminated=state["terminated"],
    )
    os._exit(0)


if __name__ == "__main__":
    main()
