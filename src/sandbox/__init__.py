"""Isolated execution of one solution script, with limits and a typed result.

    from src.sandbox import Sandbox
    result = Sandbox(timeout_s=600, memory_mb=4096).run("solution.py", prepared.public_dir, run_dir / "work")
    result.status  # ok | error | timeout | memory | killed | invalid  (see ExecutionResult)

`run` makes `workdir/` afresh with `input/` (a copy of the public files) and `solution.py` (a copy of the
script), runs `python solution.py` there and returns an `ExecutionResult`. Config: conf/sandbox/default.yaml.

Guarantee with bubblewrap (`isolation: bwrap`, or `auto` where bwrap works — Linux with bubblewrap installed,
run as root or with user namespaces allowed):
- Filesystem: the jail holds the work folder (read-write), private /tmp and /dev/shm folders, and read-only
  /usr (+ /bin /lib /sbin), a few /etc files (linker cache, timezone, fonts), /sys/devices/system/cpu (core
  counts for OpenMP/joblib) and the interpreter's prefixes.
  The repository, the shared data (raw labelled files), ~/.cache and the prepared tasks' private answers do
  not exist inside, so neither a path, nor a walk of '/', nor /proc reaches them. Writes outside the work
  folder fail or land in the private /tmp, deleted after the run.
- Identity: the solution runs as uid/gid 65534 with no capabilities. As root, it is a fresh unprivileged host
  uid per run (mapped to 65534 in its own user namespace); the launcher keeps only CAP_SETUID/CAP_SETGID/CAP_KILL
  to make that drop and end leftovers, and never runs solution code.
- Namespaces: own pid namespace (host processes invisible; when the run ends or is killed, every process in it
  dies — daemons, setsid and double-forks included), own network namespace (only a loopback with nothing
  listening: no internet, no host services on 127.0.0.1), own ipc/uts namespaces. The environment is a clean,
  minimal set (PATH, HOME, TMPDIR, LANG, thread counts): no parent variable leaks in except the math libraries'
  kernel choices (runner.NUMERICS_VARIABLES, e.g. OPENBLAS_CORETYPE), so a script's floats match pipesynth's own.
- Limits: wall-clock timeout (the tree is killed), CPU seconds per process (RLIMIT_CPU), memory as the summed
  RSS of the process tree sampled every `poll_interval_s` (RLIMIT_AS is optional and off: numpy, torch and
  OpenMP reserve many times the memory they use), processes+threads per run (RLIMIT_NPROC: fork bombs fail),
  stdout/stderr capped on disk and in memory.

Limits of the guarantee: the kernel is shared (a kernel exploit escapes any namespace jail); the memory limit
is sampled, so a very fast allocation can overshoot it by what it allocates in one interval; disk use of the
work folder and /tmp is not capped; CPU time and the read-only system files (/usr, the interpreter) are shared;
GPUs are not mounted. The host reads only `submission.csv` from the work folder, and only as a regular file
(a planted symlink makes the result `invalid`).

Without bubblewrap (`isolation: none`, or `auto` on macOS / restricted containers, which logs a loud warning
and records `isolation="none"` in every result) the solution is a plain subprocess with the same environment,
timeout, memory, CPU, output limits and subreaper cleanup, but it sees the whole filesystem and network as
this user — and as root RLIMIT_NPROC is not enforced. `isolation: bwrap` where bwrap cannot work raises
PipesynthError naming the fix.
"""

from src.sandbox.result import STATUSES, ExecutionResult, Status, parse_traceback
from src.sandbox.runner import Sandbox

__all__ = ["STATUSES", "ExecutionResult", "Sandbox", "Status", "parse_traceback"]
