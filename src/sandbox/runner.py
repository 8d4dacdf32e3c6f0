"""`Sandbox`: run one solution script in a fresh work folder under limits and return an `ExecutionResult`."""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.errors import PipesynthError
from src.sandbox import launcher
from src.sandbox.bwrap import bwrap_command, find_bwrap, python_paths
from src.sandbox.result import ExecutionResult, parse_traceback

log = logging.getLogger(__name__)

LAUNCHER_SOURCE = Path(launcher.__file__).read_text()
INNER_ID = 65534  # the uid/gid the solution sees inside the jail ("nobody")
# per-run host uids for the solution when pipesynth runs as root: one fresh uid per run keeps RLIMIT_NPROC
# per run and lets no run signal another's processes; far above the usual human and system ranges
RUN_UID_BASE, RUN_UID_SPAN = 1_000_000, 1_000_000
# the parent's choices of math-library kernels, kept in the clean environment: without them a solution's BLAS picks
# other kernels than pipesynth's own process (an image that pins OPENBLAS_CORETYPE, say), its floats differ in the
# last bits, and a score the search computed in-process is not the score the chosen script reproduces
NUMERICS_VARIABLES = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "NPY_DISABLE_CPU_FEATURES",
)
KEEP_TAIL_BYTES = 64 * 1024  # kept in memory per stream: enough for a long traceback
LOG_NAMES = {"stdout": "sandbox.stdout.log", "stderr": "sandbox.stderr.log"}
WEAK_ISOLATION_WARNING = (
    "SANDBOX ISOLATION IS WEAK: {why}. Solutions run as plain subprocesses with resource limits only — they "
    "can read every file this user can (private answers included), use the network and outlive a crash of "
    "pipesynth. Install bubblewrap (apt install bubblewrap) and allow user namespaces to isolate them."
)


class _Capture(threading.Thread):
    """Drain one pipe: the first `limit` bytes to `path`, then only a rolling in-memory tail (bounded memory and
    disk whatever the solution prints). On close the file gets a marker and the tail, so it ends like the stream.
    """

    def __init__(self, stream: Any, path: Path, limit: int) -> None:
        super().__init__(daemon=True)
        self.fd = stream.fileno()
        self.stream = stream
        self.path = path
        self.limit = limit
        self.total = 0
        self.written = 0
        self.tail = bytearray()

    def run(self) -> None:
        with open(self.path, "wb") as out:
            while True:
                try:
                    chunk = os.read(self.fd, 1 << 20)
                except OSError:
                    break
                if not chunk:
                    break
                self.total += len(chunk)
                if self.written < self.limit:
                    part = chunk[: self.limit - self.written]
                    out.write(part)
                    self.written += len(part)
                self.tail += chunk
                if len(self.tail) > 2 * KEEP_TAIL_BYTES:
                    del self.tail[:-KEEP_TAIL_BYTES]
            if self.truncated:
                tail = bytes(self.tail[-KEEP_TAIL_BYTES:])
                out.write(
                    f"\n[pipesynth sandbox: output capped at {self.limit} bytes; {self.total - self.written} "
                    f"bytes dropped; the last {len(tail)} bytes follow]\n".encode()
                )
                out.write(tail)

    @property
    def truncated(self) -> bool:
        return self.total > self.written

    def text_tail(self, chars: int) -> str:
        text = bytes(self.tail[-KEEP_TAIL_BYTES:]).decode("utf-8", errors="replace")
        return text[-chars:] if chars > 0 else ""


def _tree(root: int) -> list[tuple[int, int]]:
    """(pid, depth) of `root` and all its descendants, from /proc (Linux)."""
    out = [(root, 0)]
    i = 0
    while i < len(out):
        pid, depth = out[i]
        i += 1
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend((int(c), depth + 1) for c in f.read().split())
            except OSError:
                continue
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tree_rss_bytes(root: int, skip_depth: int) -> int:
    """Summed resident memory of `root`'s descendants deeper than `skip_depth` (the supervisors are skipped)."""
    if not sys.platform.startswith("linux"):
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a dependency
            return 0
        try:
            proc = psutil.Process(root)
            procs = proc.children(recursive=True) if skip_depth >= 0 else [proc]
            return sum(p.memory_info().rss for p in procs if p.is_running())
        except psutil.Error:
            return 0
    total = 0
    for pid, depth in _tree(root):
        if depth <= skip_depth:
            continue
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def _count_user_tasks(uid: int) -> int:
    """Processes + threads owned by `uid` (what RLIMIT_NPROC counts); 0 where /proc is unavailable."""
    count = 0
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0
    for entry in entries:
        try:
            st = os.stat(f"/proc/{entry}")
            if st.st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return count


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """chown without following symlinks: a solution may plant links to host files in its work folder."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            try:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
            except OSError:
                continue


def _write_fresh(path: Path, source: Path) -> None:
    """Move a host-written log into the work folder without following anything the solution planted there."""
    try:
        if path.is_symlink() or path.exists():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        log.warning("could not save %s: %s", path, err)
        return
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)


class Sandbox:
    """Runs solution scripts under limits, each in a fresh work folder; see `src.sandbox` for the guarantee.

    Built from `conf/sandbox/*.yaml` via `_target_`. Thread-safe: `run` keeps all state per call, so a runner's
    workers can share one instance.
    """

    def __init__(
        self,
        timeout_s: float = 3600,
        cpu_time_s: float | None = None,
        memory_mb: float = 8192,
        max_output_bytes: int = 10 * 1024 * 1024,
        tail_chars: int = 4000,
        max_processes: int = 512,
        address_space_mb: float | None = None,
        max_file_mb: float | None = None,
        isolation: str = "auto",
        python: str | None = None,
        bwrap: str = "bwrap",
        env: Mapping[str, Any] | None = None,
        extra_ro_paths: Sequence[str] = (),
        poll_interval_s: float = 0.1,
    ) -> None:
        if isolation not in ("auto", "bwrap", "none"):
            raise PipesynthError(
                f"sandbox.isolation={isolation!r} is not one of auto, bwrap, none", "use auto"
            )
        for name, value in (
            ("timeout_s", timeout_s),
            ("memory_mb", memory_mb),
            ("max_processes", max_processes),
        ):
            if value is None or value <= 0:
                raise PipesynthError(f"sandbox.{name} must be a positive number, got {value!r}")
        self.timeout_s = float(timeout_s)
        self.cpu_time_s = float(cpu_time_s) if cpu_time_s else self.timeout_s * (os.cpu_count() or 1)
        self.memory_mb = float(memory_mb)
        self.max_output_bytes = int(max_output_bytes)
        self.tail_chars = int(tail_chars)
        self.max_processes = int(max_processes)
        self.address_space_mb = float(address_space_mb) if address_space_mb else None
        self.max_file_mb = float(max_file_mb) if max_file_mb else None
        self.isolation_requested = isolation
        self.python = str(Path(python or sys.executable).absolute())
        if not os.access(self.python, os.X_OK):
            raise PipesynthError(
                f"sandbox.python={self.python} is not an executable interpreter",
                "set sandbox.python to a Python with the solutions' libraries, or leave it null",
            )
        self.bwrap = bwrap
        self.env = {str(k): str(v) for k, v in (env or {}).items() if v is not None}
        self.extra_ro_paths = [Path(p).resolve() for p in extra_ro_paths]
        self.poll_interval_s = float(poll_interval_s)
        self._privileged = hasattr(os, "geteuid") and os.geteuid() == 0
        self._backend: str | None = None
        self._bwrap_path: str | None = None
        self._ro_paths: list[Path] | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- backend choice (once per instance)

    @property
    def isolation(self) -> str:
        """The backend runs use: "bwrap" or "none" (probed on first use)."""
        with self._lock:
            if self._backend is None:
                self._backend = self._choose_backend()
            return self._backend

    def _choose_backend(self) -> str:
        if self.isolation_requested == "none":
            log.info(
                "sandbox: isolation disabled by config (isolation=none); solutions run as plain subprocesses"
            )
            return "none"
        why = self._bwrap_problem()
        if why is None:
            return "bwrap"
        if self.isolation_requested == "bwrap":
            raise PipesynthError(
                f"sandbox.isolation=bwrap but bubblewrap cannot make a sandbox here: {why}",
                "install it (apt install bubblewrap) and allow user namespaces "
                "(sysctl -w kernel.unprivileged_userns_clone=1 / user.max_user_namespaces=10000), "
                "or set sandbox.isolation=auto to fall back to a plain subprocess (weaker)",
            )
        message = WEAK_ISOLATION_WARNING.format(why=why)
        log.warning(message)
        print(f"pipesynth: WARNING: {message}", file=sys.stderr)
        return "none"

    def _bwrap_problem(self) -> str | None:
        """None if a trivial script runs in a full jail here; else what went wrong."""
        path = find_bwrap(self.bwrap)
        if path is None:
            return f"no bwrap executable '{self.bwrap}' found"
        self._bwrap_path = path
        self._ro_paths = python_paths(self.python) + self.extra_ro_paths
        with tempfile.TemporaryDirectory(prefix="pipesynth-probe-") as tmp:
            script = Path(tmp) / "probe.py"
            script.write_text("import os, sys\nprint(os.getuid())\n")
            public = Path(tmp) / "public"
            public.mkdir()
            try:
                result = self._execute(
                    script, public, Path(tmp) / "work", "bwrap", timeout_s=60.0, require=False
                )
            except PipesynthError as err:
                return str(err)
        if result.exit_code != 0:
            return f"a probe run failed ({result.message}): {result.stderr_tail.strip()[-500:]}"
        if result.stdout_tail.strip() != str(INNER_ID):
            log.warning("sandbox: the solution runs as uid %s, not %s", result.stdout_tail.strip(), INNER_ID)
        return None

    # ---------------------------------------------------------------- the run

    def run(
        self,
        script_path: str | Path,
        public_dir: str | Path,
        workdir: str | Path,
        timeout_s: float | None = None,
    ) -> ExecutionResult:
        """Run `python solution.py` in a fresh `workdir` holding `input/` (a copy of `public_dir`); `timeout_s`
        (wall seconds) replaces the sandbox's own for this run.

        The solution is expected to write `workdir/submission.csv`. Never raises for anything the solution
        does; raises PipesynthError for bad arguments or a sandbox that cannot start.
        """
        return self._execute(Path(script_path), Path(public_dir), Path(workdir), self.isolation, timeout_s)

    def _prepare_workdir(self, script: Path, public_dir: Path, workdir: Path) -> None:
        if not script.is_file():
            raise PipesynthError(f"solution script '{script}' does not exist", "pass the path of a .py file")
        if not public_dir.is_dir():
            raise PipesynthError(
                f"public task folder '{public_dir}' does not exist", "prepare the task first"
            )
        if (
            workdir == Path("/")
            or workdir == public_dir
            or workdir in public_dir.parents
            or public_dir in workdir.parents
            or workdir in script.parents
        ):
            raise PipesynthError(
                f"sandbox work folder '{workdir}' overlaps the task files or contains the script",
                "use a fresh folder such as <run dir>/runs/<task>/work",
            )
        if workdir.is_symlink() or workdir.is_file():
            workdir.unlink()
        elif workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        shutil.copytree(public_dir, workdir / "input", symlinks=False)
        shutil.copyfile(script, workdir / "solution.py")

    def _check_exposure(self, exposed: Sequence[Path], public_dir: Path) -> None:
        """Refuse a jail that would show the prepared task's private folder (a sibling of public/)."""
        task_dir = public_dir.parent
        for path in exposed:
            if path == task_dir or path in task_dir.parents:
                raise PipesynthError(
                    f"the sandbox would expose '{path}', which holds the private answers under '{task_dir}'",
                    "keep the interpreter (sandbox.python), sandbox.extra_ro_paths and the work folder outside "
                    "the cache of prepared tasks",
                )

    def _environment(self, workdir: Path, tmp: str) -> dict[str, str]:
        """A clean environment: nothing of the parent's (no secrets, no paths to private data) leaks in, except the
        math libraries' kernel choices (NUMERICS_VARIABLES)."""
        env = {
            "PATH": f"{Path(self.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": f"{tmp}/home",
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",  # tails are complete even when the run is killed
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "Agg",
        }
        env.update({name: os.environ[name] for name in NUMERICS_VARIABLES if name in os.environ})
        env.update(self.env)
        return env

    def _limits(self) -> dict[str, list[int]]:
        limits = {
            # SIGXCPU at the soft limit (reported as a timeout), SIGKILL 5 s of CPU later
            "RLIMIT_CPU": [int(self.cpu_time_s), int(self.cpu_time_s) + 5],
            "RLIMIT_CORE": [0, 0],
        }
        if self.address_space_mb:
            limits["RLIMIT_AS"] = [int(self.address_space_mb * 2**20)] * 2
        if self.max_file_mb:
            limits["RLIMIT_FSIZE"] = [int(self.max_file_mb * 2**20)] * 2
        return limits

    def _execute(
        self,
        script: Path,
        public_dir: Path,
        workdir: Path,
        backend: str,
        timeout_s: float | None = None,
        require: bool = True,
    ) -> ExecutionResult:
        script, public_dir, workdir = script.resolve(), public_dir.resolve(), workdir.absolute()
        self._prepare_workdir(script, public_dir, workdir)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        # the run's private /tmp, /dev/shm, /etc files and logs: beside the work folder (same disk, never inside
        # the jail) rather than in the host's /tmp, so that even a host killed mid-run leaves nothing elsewhere
        scratch = workdir.parent / f".{workdir.name}.sandbox"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        try:
            return self._supervise(script, public_dir, workdir, backend, timeout_s, scratch, require)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _supervise(
        self,
        script: Path,
        public_dir: Path,
        workdir: Path,
        backend: str,
        timeout_s: float,
        scratch: Path,
        require: bool,
    ) -> ExecutionResult:
        tmp_dir, shm_dir, etc_dir, logs = (scratch / n for n in ("tmp", "shm", "etc", "logs"))
        for d in (tmp_dir, shm_dir, etc_dir, logs):
            d.mkdir()
        (tmp_dir / "home").mkdir()
        spec: dict[str, Any] = {
            "argv": [self.python, "solution.py"],
            "cwd": str(workdir),
            "rlimits": self._limits(),
            "inner_id": INNER_ID,
        }
        drop_uid: int | None = None
        if backend == "bwrap":
            assert self._bwrap_path is not None and self._ro_paths is not None
            cmd, exposed = bwrap_command(
                self._bwrap_path,
                workdir=workdir,
                tmp_dir=tmp_dir,
                shm_dir=shm_dir,
                etc_dir=etc_dir,
                ro_paths=self._ro_paths,
                privileged=self._privileged,
                inner_id=INNER_ID,
            )
            self._check_exposure(exposed, public_dir)
            home = "/tmp/home"
            env = self._environment(workdir, "/tmp")
            spec["nproc"] = self.max_processes
            if self._privileged:
                drop_uid = RUN_UID_BASE + secrets.randbelow(RUN_UID_SPAN)
                spec["drop_to"] = [drop_uid, drop_uid]
                for path in (workdir, tmp_dir, shm_dir):
                    _chown_tree(path, drop_uid, drop_uid)
            skip_depth = 2  # outer bwrap -> bwrap init (pid 1) -> launcher -> solution
        else:
            cmd = []
            home = str(tmp_dir / "home")
            env = self._environment(workdir, str(tmp_dir))
            if not self._privileged and hasattr(os, "getuid"):
                # RLIMIT_NPROC counts all of this user's tasks; uid 0 ignores it altogether
                spec["nproc"] = _count_user_tasks(os.getuid()) + self.max_processes
            skip_depth = 0  # launcher -> solution
        (etc_dir / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{INNER_ID}:{INNER_ID}:sandbox:{home}:/usr/sbin/nologin\n"
        )
        (etc_dir / "group").write_text(f"root:x:0:\nsandbox:x:{INNER_ID}:\n")
        (etc_dir / "hosts").write_text("127.0.0.1 localhost sandbox\n::1 localhost\n")

        report_r, report_w = os.pipe()
        spec["report_fd"] = report_w
        cmd += [self.python, "-I", "-S", "-c", LAUNCHER_SOURCE, json.dumps(spec)]
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w,),
                start_new_session=True,
                env=env,
                cwd=workdir,
            )
        except OSError as err:
            os.close(report_r)
            os.close(report_w)
            raise PipesynthError(
                f"cannot start the sandbox ({cmd[0]}): {err}", "check sandbox.python / bwrap"
            ) from err
        os.close(report_w)
        captures = {
            name: _Capture(stream, logs / LOG_NAMES[name], self.max_output_bytes)
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
        }
        for capture in captures.values():
            capture.start()

        try:
            killed_for, peak_rss = self._watch(proc, backend, timeout_s, skip_depth, started)
        except BaseException:  # e.g. KeyboardInterrupt in the host: never leave a jail running
            self._kill(proc, backend)
            os.close(report_r)
            raise
        duration = time.perf_counter() - started
        for capture in captures.values():
            capture.join(timeout=10)
            capture.stream.close()
        reports = _read_reports(report_r)

        if drop_uid is not None:
            _chown_tree(workdir, os.geteuid(), os.getegid())
        for name, capture in captures.items():
            _write_fresh(workdir / LOG_NAMES[name], capture.path)

        final = next((r for r in reversed(reports) if "exit_code" in r), None)
        started_child = any(r.get("child") for r in reports)
        stderr_text = captures["stderr"].text_tail(KEEP_TAIL_BYTES)
        if backend == "bwrap" and not started_child and killed_for is None and require:
            raise PipesynthError(
                f"the bwrap sandbox failed to start: {stderr_text.strip()[-1000:]}",
                "check that bubblewrap works here (bwrap --ro-bind / / true), or set sandbox.isolation=none",
            )
        traceback, exc_type = parse_traceback(stderr_text)
        maxrss_mb = (final or {}).get("maxrss_kb", 0) / 1024
        cpu = (final or {}).get("cpu_s")
        exit_code = final.get("exit_code") if final else (proc.returncode if killed_for is None else -9)
        status, message = self._classify(killed_for, final, exit_code, exc_type, cpu, workdir, timeout_s)
        return ExecutionResult(
            status=status,
            exit_code=exit_code,
            duration_s=round(duration, 3),
            peak_memory_mb=round(max(peak_rss / 2**20, maxrss_mb), 1),
            stdout_tail=captures["stdout"].text_tail(self.tail_chars),
            stderr_tail=captures["stderr"].text_tail(self.tail_chars),
            traceback=traceback,
            workdir=str(workdir),
            isolation=backend,
            message=message,
            exc_type=exc_type,
            cpu_time_s=round(cpu, 3) if cpu is not None else None,
            stdout_bytes=captures["stdout"].total,
            stderr_bytes=captures["stderr"].total,
            output_truncated=any(c.truncated for c in captures.values()),
        )

    def _watch(
        self, proc: subprocess.Popen, backend: str, timeout_s: float, skip_depth: int, started: float
    ) -> tuple[str | None, int]:
        """Wait for the run, enforcing the wall-clock and memory limits; (why it was killed or None, peak RSS)."""
        limit = self.memory_mb * 2**20
        deadline = started + timeout_s
        peak = 0
        pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(proc.pid)
            except OSError:
                pidfd = None
        killed_for = None
        try:
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    killed_for = "timeout"
                    break
                wait = min(self.poll_interval_s, remaining)
                if pidfd is not None:
                    select.select([pidfd], [], [], wait)
                    if proc.poll() is not None:
                        break
                else:
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                rss = tree_rss_bytes(proc.pid, skip_depth)
                peak = max(peak, rss)
                if rss > limit:
                    killed_for = "memory"
                    break
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if killed_for is not None:
            self._kill(proc, backend)
        return killed_for, peak

    def _kill(self, proc: subprocess.Popen, backend: str) -> None:
        """End the whole tree. bwrap: SIGKILL bwrap; its pid namespace and everything in it die with it.
        none: SIGTERM the launcher, which kills and reaps every descendant; then SIGKILL its group."""
        if backend == "none" and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(
                proc.pid, signal.SIGKILL
            )  # start_new_session: the group id is the launcher's/bwrap's pid
        except OSError:
            pass
        proc.wait()

    def _classify(
        self,
        killed_for: str | None,
        final: dict[str, Any] | None,
        exit_code: int | None,
        exc_type: str | None,
        cpu: float | None,
        workdir: Path,
        timeout_s: float,
    ) -> tuple[str, str]:
        if killed_for == "timeout":
            return "timeout", f"exceeded the {timeout_s:g} s wall-clock limit; the process tree was killed"
        if killed_for == "memory":
            return "memory", f"exceeded the {self.memory_mb:g} MB memory limit; the process tree was killed"
        if final is None or exit_code is None:
            return "killed", "the sandbox's launcher died before reporting (killed from outside?)"
        if exit_code == 0:
            submission = workdir / "submission.csv"
            if submission.is_symlink() or not submission.is_file():
                what = "a symlink" if submission.is_symlink() else "no file"
                return "invalid", f"exited 0 but ./submission.csv is {what}, not a regular file"
            return "ok", "exited 0 and wrote ./submission.csv"
        if exit_code > 0:
            if exc_type and exc_type.endswith("MemoryError"):
                return "memory", f"died of {exc_type} (exit code {exit_code})"
            return "error", f"exited with code {exit_code}" + (f" ({exc_type})" if exc_type else "")
        sig = -exit_code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu is not None and cpu >= self.cpu_time_s):
            return "timeout", f"exceeded the {self.cpu_time_s:g} s CPU-time limit ({name})"
        if hasattr(signal, "SIGXFSZ") and sig == signal.SIGXFSZ and self.max_file_mb:
            return "error", f"wrote a file larger than the {self.max_file_mb:g} MB limit ({name})"
        return "killed", f"killed by {name}"


def _read_reports(fd: int) -> list[dict[str, Any]]:
    """The launcher's JSON lines (it and every holder of the pipe's write end have exited by now)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    reports = []
    for line in data.decode(errors="replace").splitlines():
        try:
            reports.append(json.loads(line))
        except ValueError:
            continue
    return reports
