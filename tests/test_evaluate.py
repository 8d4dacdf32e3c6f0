"""The suite runner: real tasks, real sandbox, real grading; resume after a kill loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.errors import PipesynthError
from src.evaluate import _rewrite_solution_path, evaluate
from src.solutions.providers import SolutionBuild

REPO = Path(__file__).resolve().parent.parent


def _cfg(tmp_path: Path, shared_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(
            "evaluate",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.shared_dir={shared_dir}",
                "progress=false",
                "show_table=false",
                "logger=none",  # the runs' W&B logging is tested in test_wandb_runs.py
                "name=dev/test",  # the run name, set by Hydra at run time
                *overrides,
            ],
        )


def test_constant_baseline_is_graded_and_rated(tmp_path: Path, shared_dir: Path) -> None:
    cfg = _cfg(tmp_path, shared_dir, "tasks=[titanic,house-prices-advanced-regression-techniques]")
    out = evaluate(cfg)
    by_task = {r["task"]: r for r in out["records"]}
    assert set(by_task) == {"titanic", "house-prices-advanced-regression-techniques"}
    titanic = by_task["titanic"]
    assert titanic["status"] == "ok", titanic
    # the majority class ("died") on a stratified 20% split of titanic: about 0.62 accuracy
    assert 0.55 < titanic["score"] < 0.70
    assert titanic["rating"]["teams"] == 4549 and titanic["rating"]["flags"]  # rolling leaderboard flagged
    house = by_task["house-prices-advanced-regression-techniques"]
    assert house["status"] == "ok" and 0.3 < house["score"] < 0.5  # rmse of log price for a constant
    assert house["rating"]["position"] is None and "no leaderboard" in house["rating"]["reason"]
    lines = Path(out["results_path"]).read_text().splitlines()
    assert len(lines) == 2


def test_invalid_submission_is_recorded_not_scored(tmp_path: Path, shared_dir: Path) -> None:
    bad = tmp_path / "half_rows.py"
    bad.write_text(
        "import pandas as pd\n"
        "s = pd.read_csv('input/sample_submission.csv')\n"
        "s.iloc[: len(s) // 2].to_csv('submission.csv', index=False)\n"
    )
    cfg = _cfg(
        tmp_path, shared_dir, "tasks=[titanic]", "solution=file", f"solution.path={bad}", "solution.name=bad"
    )
    record = evaluate(cfg)["records"][0]
    assert record["status"] == "invalid" and record["score"] is None
    assert record["invalid_reason"]


def test_unknown_task_is_one_clear_error(tmp_path: Path, shared_dir: Path) -> None:
    cfg = _cfg(tmp_path, shared_dir, "tasks=[not-a-task]")
    with pytest.raises(PipesynthError, match="not-a-task"):
        evaluate(cfg)


def test_solution_path_argument_is_rewritten() -> None:
    args = _rewrite_solution_path(["suite=dev", "solution=sols/my_sol.py"])
    assert args[0] == "suite=dev" and args[1] == "solution=file"
    assert args[2].startswith("solution.path=/") and args[2].endswith("sols/my_sol.py")
    assert args[3] == "solution.name=my_sol"
    assert _rewrite_solution_path(["solution=baseline_gbdt"]) == ["solution=baseline_gbdt"]


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path: Path, shared_dir: Path) -> None:
    slow = tmp_path / "slow_constant.py"
    # the constant baseline, slowed down so the run can be killed between tasks
    slow.write_text(
        "import time\ntime.sleep(2.5)\n" + (REPO / "src/solutions/baseline_constant.py").read_text()
    )
    run_dir = tmp_path / "run"
    tasks = "tasks=[titanic,spaceship-titanic,playground-series-s3e22]"
    cmd = [
        sys.executable, "-m", "src.evaluate", tasks, f"solution={slow}", "workers=1", "progress=false",
        f"paths.cache_dir={tmp_path / 'cache'}", f"paths.shared_dir={shared_dir}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    results = run_dir / "results.jsonl"
    proc = subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [json.loads(line) for line in results.read_text().splitlines()]
    assert 1 <= len(finished) < 3

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    keys = [(r["task"], r["solution"], r["seed"]) for r in records]
    assert len(keys) == len(set(keys)) == 3
    # the records finished before the kill were kept as they were, not re-run
    for before in finished:
        after = next(r for r in records if r["task"] == before["task"])
        assert after["started_at"] == before["started_at"]
    assert all(r["status"] == "ok" for r in records)


class DerivedInputsProvider:
    """A build that keeps a derived input folder (as the search keeps cached embeddings) beside its script."""

    def __init__(self, name: str = "derived") -> None:
        self.name = name

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        derived = build_dir / "derived" / "embeddings"
        derived.mkdir(parents=True, exist_ok=True)
        (derived / "cached.npy").write_text("vectors")
        script = build_dir / "solution.py"
        script.write_text(
            "import pandas as pd\n"
            "assert open('input/embeddings/cached.npy').read() == 'vectors'\n"
            "pd.read_csv('input/sample_submission.csv').to_csv('submission.csv', index=False)\n"
        )
        return SolutionBuild(script=script, inputs=build_dir / "derived")


def test_the_final_run_reads_what_the_build_derived(tmp_path: Path, shared_dir: Path) -> None:
    """The derived folders of a build (the search's cached sentence embeddings) reach the final run as
    input/<folder>/, beside the public files, which stay untouched."""
    cfg = _cfg(
        tmp_path, shared_dir, "tasks=[titanic]", "solution=file", "solution.path=baseline_constant.py",
        f"solution._target_={__name__}.DerivedInputsProvider", "~solution.path", "solution.name=derived",
    )  # fmt: skip
    record = evaluate(cfg)["records"][0]
    assert record["status"] == "ok", record
    public = next((tmp_path / "cache").rglob("public/sample_submission.csv")).parent
    assert not (public / "embeddings").exists()
