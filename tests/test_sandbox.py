"""The sandbox: normal runs, typed failures, and hostile solutions that must be contained with nothing leaked.

Hostile tests need bubblewrap (the jail); they skip, naming the reason, only where bwrap cannot work here.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.sandbox import ExecutionResult, Sandbox, parse_traceback

FAST = {"timeout_s": 20, "memory_mb": 2048, "max_output_bytes": 1 << 20}


@pytest.fixture(scope="module")
def jail() -> Sandbox:
    sandbox = Sandbox(isolation="auto", **FAST)
    if sandbox.isolation != "bwrap":
        pytest.skip(
            "bubblewrap cannot create a sandbox on this machine (see the warning above); hostile tests need it"
        )
    return sandbox


@pytest.fixture
def task(tmp_path: Path) -> dict[str, Path]:
    """A prepared-task layout: public/ (what the solution gets) beside private/answers.csv (what it must not)."""
    root = tmp_path / "prepared" / "toy" / "0"
    public, private = root / "public", root / "private"
    public.mkdir(parents=True)
    private.mkdir()
    (public / "train.csv").write_text("id,x,y\n1,0.5,0\n2,1.5,1\n")
    (public / "test.csv").write_text("id,x\n3,0.7\n4,1.2\n")
    (public / "sample_submission.csv").write_text("id,y\n3,0\n4,0\n")
    secret = f"SECRET-{uuid.uuid4().hex}"
    (private / "answers.csv").write_text(f"id,y\n3,0\n4,1\n# {secret}\n")
    return {"public": public, "answers": private / "answers.csv", "secret": Path(secret), "root": tmp_path}


def run_code(sandbox: Sandbox, task: dict[str, Path], code: str, name: str = "work") -> ExecutionResult:
    script = task["root"] / f"{name}_solution.py"
    script.write_text(textwrap.dedent(code))
    return sandbox.run(script, task["public"], task["root"] / "runs" / name)


def processes_with(token: str) -> list[int]:
    """Host pids whose command line contains `token`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


WRITE_SUBMISSION = """
import pandas as pd
sample = pd.read_csv("input/sample_submission.csv")
sample["y"] = 1
sample.to_csv("submission.csv", index=False)
"""

# ------------------------------------------------------------------------------------------- normal behaviour


@pytest.mark.parametrize("backend", ["bwrap", "none"])
def test_normal_solution_is_ok(backend: str, jail: Sandbox, task: dict[str, Path]) -> None:
    sandbox = jail if backend == "bwrap" else Sandbox(isolation="none", **FAST)
    result = run_code(
        sandbox, task, WRITE_SUBMISSION + "import os; print('uid', os.getuid(), sorted(os.listdir('input')))"
    )
    assert result.status == "ok", result
    assert result.exit_code == 0 and result.isolation == backend
    work = Path(result.workdir)
    assert (work / "submission.csv").read_text().splitlines() == ["id,y", "3,1", "4,1"]
    assert sorted(p.name for p in (work / "input").iterdir()) == [
        "sample_submission.csv",
        "test.csv",
        "train.csv",
    ]
    assert "sample_submission.csv" in result.stdout_tail
    if backend == "bwrap":
        assert "uid 65534" in result.stdout_tail
    assert (work / "sandbox.stdout.log").read_text() == result.stdout_tail
    assert 20 < result.peak_memory_mb < 1000  # pandas imported: tens of MB, per run
    assert result.duration_s > 0 and result.cpu_time_s is not None
    assert ExecutionResult.from_dict(json.loads(result.to_json())) == result


def test_raising_solution_gives_error_with_traceback(jail: Sandbox, task: dict[str, Path]) -> None:
    code = """
    def fit():
        raise ValueError("boom: column 'age' missing")
    print("starting")
    fit()
    """
    result = run_code(jail, task, code)
    assert result.status == "error" and result.exit_code == 1
    assert result.exc_type == "ValueError"
    assert result.traceback.startswith("Traceback (most recent call last):")
    assert result.traceback.endswith("ValueError: boom: column 'age' missing")
    assert "line 3, in fit" in result.traceback
    assert result.stdout_tail == "starting\n"


def test_exit_code_is_propagated(jail: Sandbox, task: dict[str, Path]) -> None:
    result = run_code(jail, task, "import sys\nsys.exit(3)\n")
    assert (result.status, result.exit_code, result.traceback) == ("error", 3, None)


def test_missing_or_planted_submission_is_invalid(jail: Sandbox, task: dict[str, Path]) -> None:
    assert run_code(jail, task, "print('forgot')\n").status == "invalid"
    # a symlink to the private answers would make the HOST grader read them: never accepted
    code = f"import os\nos.symlink({str(task['answers'])!r}, 'submission.csv')\n"
    result = run_code(jail, task, code, name="symlink")
    assert result.status == "invalid" and "symlink" in result.message


def test_memory_error_and_cpu_limit_are_typed(jail: Sandbox, task: dict[str, Path]) -> None:
    assert run_code(jail, task, "raise MemoryError()\n").status == "memory"
    spin = Sandbox(isolation="bwrap", timeout_s=20, cpu_time_s=1)
    result = run_code(spin, task, "while True:\n    pass\n", name="cpu")
    assert result.status == "timeout" and "CPU-time" in result.message
    assert result.duration_s < 10


def test_parallel_runs_share_nothing(jail: Sandbox, task: dict[str, Path]) -> None:
    code = WRITE_SUBMISSION + "import time, os; time.sleep(1.0); open('mine.txt', 'w').write(os.getcwd())\n"
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda i: run_code(jail, task, code, name=f"par{i}"), range(3)))
    assert [r.status for r in results] == ["ok"] * 3
    assert len({r.workdir for r in results}) == 3
    for r in results:
        assert (Path(r.workdir) / "mine.txt").read_text() == r.workdir
    assert time.perf_counter() - started < 3 * 1.0 + 4  # they ran side by side, not one after another


def test_peak_memory_is_per_run(jail: Sandbox, task: dict[str, Path]) -> None:
    big = "import time\nblob = b'x' * (200 * 2**20)\ntime.sleep(0.5)\nopen('submission.csv', 'w').write('id,y\\n')\n"
    small = "import time\ntime.sleep(0.5)\nopen('submission.csv', 'w').write('id,y\\n')\n"
    with ThreadPoolExecutor(max_workers=2) as pool:
        heavy = pool.submit(run_code, jail, task, big, "big")
        light = pool.submit(run_code, jail, task, small, "small")
        heavy, light = heavy.result(), light.result()
    assert heavy.status == light.status == "ok"
    assert 200 <= heavy.peak_memory_mb < 320, heavy.peak_memory_mb
    assert light.peak_memory_mb < 40, light.peak_memory_mb  # a bare interpreter: the other run is not counted


def test_multiprocessing_works_in_the_jail(jail: Sandbox, task: dict[str, Path]) -> None:
    code = (
        WRITE_SUBMISSION
        + """
import multiprocessing as mp
def square(x):
    return x * x
if __name__ == "__main__":
    with mp.Pool(2) as pool:  # needs /dev/shm semaphores and fork inside the process limit
        print(pool.map(square, range(5)))
"""
    )
    result = run_code(jail, task, code)
    assert result.status == "ok", result
    assert "[0, 1, 4, 9, 16]" in result.stdout_tail


def test_sandbox_configs_instantiate() -> None:
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        default = instantiate(compose("evaluate", overrides=["sandbox=default"]).sandbox)
        bare = instantiate(compose("evaluate", overrides=["sandbox=bare"]).sandbox)
    assert isinstance(default, Sandbox) and default.isolation_requested == "auto"
    assert bare.isolation == "none" and bare.env["OMP_NUM_THREADS"] == "1"


def test_forced_bwrap_unavailable_raises_and_auto_falls_back_loudly(
    task: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PipesynthError, match="apt install bubblewrap"):
        _ = Sandbox(isolation="bwrap", bwrap="/nonexistent/bwrap").isolation
    fallback = Sandbox(isolation="auto", bwrap="/nonexistent/bwrap", **FAST)
    result = run_code(fallback, task, WRITE_SUBMISSION)
    assert result.status == "ok" and result.isolation == "none"
    assert "SANDBOX ISOLATION IS WEAK" in caplog.text
    with pytest.raises(PipesynthError, match="isolation"):
        Sandbox(isolation="docker")


def test_bad_arguments_are_user_errors(task: dict[str, Path]) -> None:
    sandbox = Sandbox(isolation="none", **FAST)
    script = task["root"] / "s.py"
    script.write_text("pass\n")
    with pytest.raises(PipesynthError, match="does not exist"):
        sandbox.run(task["root"] / "missing.py", task["public"], task["root"] / "w")
    with pytest.raises(PipesynthError, match="does not exist"):
        sandbox.run(script, task["root"] / "nope", task["root"] / "w")
    with pytest.raises(PipesynthError, match="overlaps"):  # rmtree-ing it would delete the task itself
        sandbox.run(script, task["public"], task["public"].parent)
    with pytest.raises(PipesynthError, match="overlaps"):
        sandbox.run(script, task["public"], task["public"] / "work")
    with pytest.raises(PipesynthError, match="timeout_s"):
        Sandbox(timeout_s=0)
    assert task["answers"].exists() and (task["public"] / "train.csv").exists()


def test_parse_traceback_takes_the_last_chained_block() -> None:
    stderr = (
        'warning: something\nTraceback (most recent call last):\n  File "a.py", line 1, in <module>\n'
        "KeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n    raise RuntimeError('bad')\n"
        "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 8 GiB\n"
    )
    text, exc = parse_traceback(stderr)
    assert exc == "numpy.core._exceptions._ArrayMemoryError"
    assert text.startswith("Traceback") and "KeyError" not in text
    assert parse_traceback("all good\n") == (None, None)


# ------------------------------------------------------------------------------------------- hostile solutions


def test_infinite_loop_times_out(task: dict[str, Path], jail: Sandbox) -> None:
    sandbox = Sandbox(isolation="bwrap", timeout_s=2)
    result = run_code(sandbox, task, "print('spinning', flush=True)\nwhile True:\n    pass\n")
    assert result.status == "timeout" and "wall-clock" in result.message
    assert 2 <= result.duration_s < 5
    assert result.stdout_tail == "spinning\n"


def test_memory_bomb_is_stopped(task: dict[str, Path], jail: Sandbox) -> None:
    sandbox = Sandbox(isolation="bwrap", timeout_s=30, memory_mb=300)
    code = """
    hoard = []
    while True:
        hoard.append(b"x" * (20 * 2**20))  # touched pages: real resident memory
    """
    result = run_code(sandbox, task, code)
    assert result.status == "memory", result
    assert 300 <= result.peak_memory_mb < 1500
    assert result.duration_s < 10


def test_fork_bomb_is_contained(task: dict[str, Path], jail: Sandbox) -> None:
    token = f"FORKBOMB-{uuid.uuid4().hex}"
    sandbox = Sandbox(isolation="bwrap", timeout_s=3, max_processes=64)
    code = f"""
    import os, sys
    if len(sys.argv) == 1:  # re-exec with a token in argv so the host can look for survivors
        os.execv(sys.executable, [sys.executable, "solution.py", {token!r}])
    while True:  # a resilient bomb: a failed fork does not stop it
        try:
            os.fork()
        except OSError:
            if not os.path.exists("limit_hit"):
                open("limit_hit", "w").close()
    """
    started = time.perf_counter()
    result = run_code(sandbox, task, code)
    assert result.status in ("error", "killed", "timeout"), result
    assert time.perf_counter() - started < 10
    assert (Path(result.workdir) / "limit_hit").exists()  # RLIMIT_NPROC stopped it, not just the clock
    assert processes_with(token) == []


@pytest.mark.parametrize("backend", ["bwrap", "none"])
def test_daemon_left_running_is_killed(backend: str, task: dict[str, Path], jail: Sandbox) -> None:
    token = f"DAEMON-{uuid.uuid4().hex}"
    sandbox = jail if backend == "bwrap" else Sandbox(isolation="none", **FAST)
    daemon = f"import time, pathlib\\nwhile True:\\n    pathlib.Path('heartbeat').touch(); time.sleep(0.05)  # {token}"
    code = f"""
    import os, sys, time
    if os.fork() == 0:          # double fork + setsid: the classic daemon
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "{daemon}"])
        os._exit(0)
    time.sleep(0.5)
    open("submission.csv", "w").write("id,y\\n3,0\\n4,0\\n")
    """
    result = run_code(sandbox, task, code)
    assert result.status == "ok", result
    heartbeat = Path(result.workdir) / "heartbeat"
    assert heartbeat.exists()  # the daemon did run
    assert processes_with(token) == []
    beat = heartbeat.stat().st_mtime_ns
    time.sleep(0.3)
    assert heartbeat.stat().st_mtime_ns == beat


@pytest.mark.parametrize("backend", ["bwrap", "none"])
def test_nothing_survives_a_killed_host(backend: str, task: dict[str, Path], jail: Sandbox) -> None:
    """SIGKILL the process running the sandbox (no cleanup code runs): the solution's tree still dies."""
    token = f"ORPHAN-{uuid.uuid4().hex}"
    script = task["root"] / "orphan.py"
    script.write_text(
        f"import os, sys, time\nif len(sys.argv) == 1:\n    os.execv(sys.executable, [sys.executable, 'solution.py', {token!r}])\n"
        "os.fork()\nwhile True:\n    time.sleep(0.05)\n"
    )
    driver = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from src.sandbox import Sandbox\n"
        f"Sandbox(isolation={backend!r}, timeout_s=60).run({str(script)!r}, {str(task['public'])!r}, "
        f"{str(task['root'] / 'host-killed')!r})\n"
    )
    host = subprocess.Popen([sys.executable, "-c", driver])
    try:
        deadline = time.monotonic() + 20
        while len(processes_with(token)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(token)) == 2, "the solution never started"
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 5
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(token) == []


def test_private_and_raw_data_unreadable_by_path(
    task: dict[str, Path], jail: Sandbox, shared_dir: Path
) -> None:
    raw = shared_dir / "data" / "kaggle" / "titanic" / "raw" / "train.csv"
    assert raw.is_file()
    targets = [
        str(task["answers"]),
        str(raw),
        str(REPO_ROOT / "pyproject.toml"),
        str(REPO_ROOT / "src" / "sandbox" / "runner.py"),
        "/root/.bashrc",
        "/etc/shadow",
        "/proc/1/root" + str(raw),
    ]
    code = f"""
    import json
    out = {{}}
    for path in {targets!r}:
        try:
            out[path] = open(path).read()[:200]
        except OSError as err:
            out[path] = type(err).__name__
    print(json.dumps(out))
    """
    result = run_code(jail, task, code)
    assert result.status == "invalid"  # ran fine, wrote no submission
    seen = json.loads(result.stdout_tail)
    assert set(seen.values()) <= {"FileNotFoundError", "PermissionError"}, seen
    assert str(task["secret"]) not in result.stdout_tail
    assert "PassengerId" not in result.stdout_tail


def test_filesystem_walk_finds_nothing_private(task: dict[str, Path], jail: Sandbox) -> None:
    secret = str(task["secret"])
    code = f"""
    import os, stat
    secret = {secret[::-1]!r}[::-1].encode()  # reversed, so that solution.py itself does not hold the token
    wanted = ("answers.csv", "train.csv", "test.csv", "gender_submission.csv", "leaderboard.csv", "task.json")
    names, hits = [], []
    for root, dirs, files in os.walk("/"):
        if root in ("/proc", "/sys", "/dev"):  # kernel views, and /dev/zero would never end a read
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            if name in wanted or "answers" in name or "/prepared/" in path or "/data/kaggle" in path:
                names.append(path)
            if root.startswith("/usr") or "python3.11" in root:
                continue  # system and library files: names only
            try:
                st = os.stat(path)
                if stat.S_ISREG(st.st_mode) and st.st_size < 2**20 and secret in open(path, "rb").read():
                    hits.append(path)
            except OSError:
                pass
    import json
    json.dump({{"names": sorted(names), "hits": hits}}, open("found.json", "w"))
    """
    result = run_code(jail, task, code)
    work = result.workdir
    found = json.loads((Path(work) / "found.json").read_text())
    assert found["hits"] == []
    names = found["names"]
    # the walk works (it finds the public copies) and finds nothing else: no answers, no raw, no other task
    assert sorted(names) == [f"{work}/input/test.csv", f"{work}/input/train.csv"], names


def test_environment_leaks_nothing(
    task: dict[str, Path], jail: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = str(task["secret"])
    monkeypatch.setenv("PIPESYNTH_TEST_SECRET", secret)
    monkeypatch.setenv("PIPESYNTH_CACHE", str(task["answers"].parent))
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code = """
    import os, sys
    print(dict(os.environ))
    if sys.argv[-1] != "bare":  # in the jail, no visible process has the parent's environment either
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    print(pid, open(f"/proc/{pid}/environ", "rb").read())
                except OSError as err:
                    print(pid, type(err).__name__)
    """
    bare = Sandbox(isolation="none", **FAST)  # weaker by design: only its own environment is clean
    for sandbox in (jail, bare):
        result = run_code(
            sandbox, task, code.replace("sys.argv[-1]", repr("bare" if sandbox is bare else ""))
        )
        assert result.status == "invalid", result
        assert "PATH" in result.stdout_tail
        assert secret not in result.stdout_tail
        assert str(task["answers"].parent) not in result.stdout_tail
        assert "PIPESYNTH" not in result.stdout_tail and "OPENAI" not in result.stdout_tail


def test_solutions_use_the_same_blas_kernels_as_pipesynth(task: dict[str, Path]) -> None:
    """A score computed in-process (the search's stack) must be the one the sandboxed script reproduces: the clean
    environment keeps the parent's kernel choices, so OpenBLAS picks the same kernel on both sides (this machine's
    image pins OPENBLAS_CORETYPE, below what OpenBLAS detects: without it the floats differ in the last bits)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401  (loads the BLAS threadpoolctl reports on)

    def kernels(info: list[dict]) -> set[tuple[str, str]]:
        return {(i["internal_api"], str(i.get("architecture"))) for i in info if i["user_api"] == "blas"}

    here = kernels(threadpoolctl.threadpool_info())
    code = """
    import json, numpy, threadpoolctl
    print("KERNELS", json.dumps(threadpoolctl.threadpool_info()))
    """
    result = run_code(Sandbox(isolation="none", **FAST), task, code)
    line = next(x for x in result.stdout_tail.splitlines() if x.startswith("KERNELS "))
    there = kernels(json.loads(line.removeprefix("KERNELS ")))
    # pipesynth's process may hold more BLAS copies (scipy's, torch's) than numpy's
    assert there and there <= here


def test_the_clean_environment_keeps_only_the_kernel_choices(
    task: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_SECRETISH", "x")  # a prefix match would let this through
    code = """
    import os
    print("CORE", os.environ.get("OPENBLAS_CORETYPE"), os.environ.get("OPENBLAS_SECRETISH"))
    """
    result = run_code(Sandbox(isolation="none", **FAST), task, code)
    assert "CORE Haswell None" in result.stdout_tail


def test_writes_outside_the_work_folder_go_nowhere(task: dict[str, Path], jail: Sandbox) -> None:
    token = uuid.uuid4().hex
    host_targets = [
        Path("/tmp") / f"escape-{token}",
        Path("/dev/shm") / f"escape-{token}",
        REPO_ROOT / f"escape-{token}",
        task["root"] / f"escape-{token}",  # the work folder's parent
        task["public"] / f"escape-{token}",
        Path("/root") / f"escape-{token}",
        Path("/usr") / f"escape-{token}",
        Path("/etc") / f"escape-{token}",
        Path("/") / f"escape-{token}",
    ]
    code = f"""
    out = {{}}
    for path in {[str(p) for p in host_targets]!r}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
            out[path] = "written"
        except OSError as err:
            out[path] = type(err).__name__
    print(out)
    """
    result = run_code(jail, task, code)
    assert result.status == "invalid", result
    for path in host_targets:
        assert not path.exists(), f"{path} escaped the sandbox"
    assert not list(Path("/tmp").glob(f"**/escape-{token}"))


def test_planted_links_do_not_turn_the_host_against_itself(task: dict[str, Path], jail: Sandbox) -> None:
    """After the run the host writes logs into, and re-owns, the work folder: never through the solution's links."""
    victim = task["root"] / "victim.txt"
    victim.write_text("untouched")
    os.chown(victim, 4242, 4242)
    code = f"""
    import os
    for name in ("sandbox.stdout.log", "sandbox.stderr.log", "link-to-victim"):
        os.symlink({str(victim)!r}, name)
    os.mkfifo("submission.csv")  # a host reader that opened it would block forever
    print("planted")
    """
    result = run_code(jail, task, code)
    assert result.status == "invalid", result
    assert victim.read_text() == "untouched"
    assert (victim.stat().st_uid, victim.stat().st_gid) == (4242, 4242)
    assert (Path(result.workdir) / "sandbox.stdout.log").read_text() == "planted\n"


def test_no_network_even_to_localhost(task: dict[str, Path], jail: Sandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        code = f"""
        import socket
        for host, port in [("127.0.0.1", {port}), ("localhost", {port}), ("8.8.8.8", 53)]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                print(host, "CONNECTED")
            except OSError as err:
                print(host, type(err).__name__)
        """
        result = run_code(jail, task, code)
        readable, _, _ = select.select([listener], [], [], 0.2)
    finally:
        listener.close()
    assert "CONNECTED" not in result.stdout_tail
    assert "127.0.0.1 ConnectionRefusedError" in result.stdout_tail
    assert readable == []  # the host listener never saw a connection attempt


def test_huge_stdout_is_capped(task: dict[str, Path], jail: Sandbox) -> None:
    code = """
    import sys
    block = b"x" * 2**20 + b"\\n"
    for _ in range(100):
        sys.stdout.buffer.write(block)
    sys.stdout.buffer.write(b"END-OF-OUTPUT\\n")
    sys.stdout.flush()
    open("submission.csv", "w").write("id,y\\n3,0\\n4,0\\n")
    """
    result = run_code(jail, task, code)
    assert result.status == "ok", result
    assert result.output_truncated and result.stdout_bytes > 100 * 2**20
    assert result.stdout_tail.endswith("END-OF-OUTPUT\n")
    assert len(result.stdout_tail) <= 4000
    log = Path(result.workdir) / "sandbox.stdout.log"
    assert log.stat().st_size < 2**20 + 70 * 1024
    assert log.read_bytes().endswith(b"END-OF-OUTPUT\n")
    assert result.duration_s < 20


UNPRIVILEGED_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from src.sandbox import Sandbox
sandbox = Sandbox(python="/usr/bin/python3", timeout_s=20, max_processes=40)
if sandbox.isolation != "bwrap":
    print(json.dumps({"isolation": sandbox.isolation}))
    raise SystemExit(0)
result = sandbox.run(sys.argv[2], sys.argv[3], sys.argv[4])
print(json.dumps(result.to_dict()))
"""


@pytest.mark.skipif(
    not hasattr(os, "geteuid")
    or os.geteuid() != 0
    or not shutil.which("setpriv")
    or not Path("/usr/bin/python3").exists(),
    reason="needs root (to become an ordinary user with setpriv) and a system /usr/bin/python3",
)
def test_unprivileged_user_gets_the_same_jail(shared_dir: Path) -> None:
    """Without root, bwrap makes the user namespace itself: same uid 65534, same walls, same process limit."""
    raw = shared_dir / "data" / "kaggle" / "titanic" / "raw" / "train.csv"
    root = Path(tempfile.mkdtemp(prefix="pipesynth-unpriv-", dir="/tmp"))
    try:
        # the sandbox package needs only the standard library: a copy runs under the system python, as nobody
        pkg = root / "pkg" / "src"
        shutil.copytree(REPO_ROOT / "src" / "sandbox", pkg / "sandbox")
        shutil.copyfile(REPO_ROOT / "src" / "errors.py", pkg / "errors.py")
        (pkg / "__init__.py").write_text("")
        (root / "public").mkdir()
        (root / "public" / "train.csv").write_text("id,y\n1,0\n")
        (root / "solution.py").write_text(
            textwrap.dedent(f"""
            import json, os, socket
            out = {{"uid": os.getuid()}}
            try:
                open({str(raw)!r}).read()
                out["raw"] = "READ"
            except OSError as err:
                out["raw"] = type(err).__name__
            try:
                socket.create_connection(("127.0.0.1", 22), timeout=1)
                out["net"] = "CONNECTED"
            except OSError as err:
                out["net"] = type(err).__name__
            children = 0
            try:
                while True:
                    if os.fork() == 0:
                        import time
                        time.sleep(2)
                        os._exit(0)
                    children += 1
            except OSError:
                out["children"] = children
            print(json.dumps(out))
            open("submission.csv", "w").write("id,y\\n1,0\\n")
            """)
        )
        (root / "work").mkdir()
        for path in [root, *root.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        assert os.access(raw, os.R_OK)  # world-readable on the host: only the jail keeps it away
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", "-c"]
            + [
                UNPRIVILEGED_DRIVER,
                str(root / "pkg"),
                str(root / "solution.py"),
                str(root / "public"),
                str(root / "work" / "run"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["isolation"] != "bwrap":
            pytest.skip("user namespaces are disabled for ordinary users here: bwrap cannot run unprivileged")
        assert result["status"] == "ok", result
        seen = json.loads(result["stdout_tail"])
        assert seen["uid"] == 65534 and seen["raw"] == "FileNotFoundError"
        assert seen["net"] == "ConnectionRefusedError"
        assert seen["children"] < 40  # RLIMIT_NPROC counted in the run's own user namespace
    finally:
        shutil.rmtree(root, ignore_errors=True)
