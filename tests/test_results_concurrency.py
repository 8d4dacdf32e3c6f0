"""Many writers, one results store: processes (and Hydra launcher jobs) lose and duplicate no record."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

from src.reporting.results import ResultsStore, record_key

REPO = Path(__file__).resolve().parent.parent


def _writer(path: str, worker: int, n: int) -> None:
    store = ResultsStore(path)  # opened before the others wrote: its view is stale on purpose
    for i in range(n):
        store.add({"task": f"t{i}", "solution": f"w{worker}", "seed": 0, "score": float(i)})
        # every worker also rewrites one shared key: the last write wins, it is never duplicated
        store.add({"task": "shared", "solution": "all", "seed": 0, "score": float(worker)})


def test_concurrent_processes_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [record_key(r) for r in lines]
    assert len(keys) == len(set(keys)) == 4 * 25 + 1
    assert {(f"t{i}", f"w{w}", 0) for w in range(4) for i in range(25)} <= set(keys)
    assert len(ResultsStore(path)) == 101


def test_hydra_launcher_jobs_share_one_store(tmp_path: Path, shared_dir: Path) -> None:
    """One job per (task x seed) through Hydra's joblib launcher, in parallel, into one results.jsonl."""
    env = {**os.environ, "PIPESYNTH_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable, "-m", "src.evaluate", "-m", "hydra=cluster", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=3", f"paths.root_dir={tmp_path}", f"paths.shared_dir={shared_dir}",
        "solution=baseline_constant", "tasks=[titanic],[spaceship-titanic]", "seeds=[0],[1]",
        "progress=false", "show_table=false", "logger=none",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = tmp_path / "outputs" / "evaluate" / "dev" / "baseline_constant" / "results.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert sorted((r["task"], r["seed"]) for r in records) == [
        ("spaceship-titanic", 0), ("spaceship-titanic", 1), ("titanic", 0), ("titanic", 1),
    ]  # fmt: skip
    assert all(r["status"] == "ok" and r["score"] is not None for r in records)
