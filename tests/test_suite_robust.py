"""A suite never dies on one task: broken, unpreparable and crashing tasks get `error` records, the rest run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from src.evaluate import evaluate, suite_notes
from src.solutions.providers import ScriptFile, SolutionBuild, read_public_facts

REPO = Path(__file__).resolve().parent.parent
GOOD = ["titanic", "playground-series-s3e22"]
CRASHES = "house-prices-advanced-regression-techniques"  # its solution build raises
TITANIC_FACTS = {
    "title": "t", "data_type": "tabular", "task_type": "binary_classification", "id_column": "PassengerId",
    "targets": ["Survived"], "metric": "accuracy", "higher_is_better": True,
}  # fmt: skip


class RaisingProvider(ScriptFile):
    """The constant baseline, except that building a solution for `fail_on` raises (a provider bug)."""

    def __init__(self, path: str, name: str, fail_on: str) -> None:
        super().__init__(path, name)
        self.fail_on = fail_on

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        if read_public_facts(public_dir)["slug"] == self.fail_on:
            raise RuntimeError(f"provider exploded on {self.fail_on}\nsecond line of the traceback text")
        return super().build(public_dir, build_dir, seed)


def _data_dir(tmp_path: Path, kaggle_dir: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for slug in [*GOOD, CRASHES]:
        (data / slug).symlink_to(kaggle_dir / slug)  # real data, read in place
    (data / "no-data").mkdir()  # a valid task whose download is missing: cannot be prepared
    (data / "no-data" / "task.json").write_text(json.dumps({"slug": "no-data", **TITANIC_FACTS}))
    (data / "bad-facts").mkdir()  # a task.json without a metric: cannot even be loaded
    (data / "bad-facts" / "task.json").write_text(json.dumps({"title": "t", "data_type": "tabular"}))
    return data


def _overrides(tmp_path: Path, data: Path, shared_dir: Path) -> list[str]:
    tasks = ",".join([*GOOD, CRASHES, "no-data", "bad-facts"])
    return [
        f"paths.data_dir={data}", f"paths.cache_dir={tmp_path / 'cache'}", f"paths.shared_dir={shared_dir}",
        f"suite.tasks=[{tasks}]", "solution=file", f"solution._target_={__name__}.RaisingProvider",
        "solution.path=baseline_constant.py", "solution.name=flaky", f"+solution.fail_on={CRASHES}",
        "progress=false", "logger=none", "workers=1",
    ]  # fmt: skip


def test_a_suite_with_broken_tasks_finishes_the_others(
    tmp_path: Path, kaggle_dir: Path, shared_dir: Path
) -> None:
    data = _data_dir(tmp_path, kaggle_dir)
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                *_overrides(tmp_path, data, shared_dir),
                f"paths.output_dir={tmp_path / 'run'}",
                "name=dev/flaky",
                "show_table=false",
            ],  # fmt: skip
        )
    out = evaluate(cfg)
    by_task = {r["task"]: r for r in out["records"]}
    assert set(by_task) == {*GOOD, CRASHES, "no-data", "bad-facts"}
    for slug in GOOD:
        assert by_task[slug]["status"] == "ok" and by_task[slug]["score"] is not None, by_task[slug]
    errors = {r["task"]: r["error"] for r in out["errors"]}
    assert set(errors) == {CRASHES, "no-data", "bad-facts"}
    # one clear line each, naming the stage and the cause
    assert errors[CRASHES] == f"run: RuntimeError: provider exploded on {CRASHES}"
    assert (
        errors["no-data"].startswith("prepare: task 'no-data' has no data") and "kaggle" in errors["no-data"]
    )
    assert errors["bad-facts"].startswith("load: ") and "metric" in errors["bad-facts"]
    assert all(by_task[s]["score"] is None and by_task[s]["rating"] is None for s in errors)
    notes = suite_notes(out["records"])
    assert any("3 task(s) errored" in line for line in notes)
    assert any(line.strip().startswith(f"{CRASHES} (seed 0): run: RuntimeError") for line in notes)


def test_exit_code_is_non_zero_and_a_rerun_resumes(
    tmp_path: Path, kaggle_dir: Path, shared_dir: Path
) -> None:
    data = _data_dir(tmp_path, kaggle_dir)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "src.evaluate",
        *_overrides(tmp_path, data, shared_dir),
        f"hydra.run.dir={run_dir}",
    ]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "3 task(s) errored" in first.stderr
    assert (
        "Traceback" not in first.stderr.split("provider exploded")[-1]
    )  # the summary, not a traceback, ends it
    records = {r["task"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert len(records) == 5 and {records[s]["status"] for s in GOOD} == {"ok"}

    # the missing download arrives: a re-run keeps the finished records and retries only the errored ones
    (data / "no-data" / "raw").symlink_to(kaggle_dir / "titanic" / "raw")
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1, second.stderr  # two tasks still error
    assert "2 task(s) errored" in second.stderr
    again = {r["task"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    for slug in GOOD:
        assert again[slug]["started_at"] == records[slug]["started_at"]  # kept, not re-run
    assert again["no-data"]["status"] == "ok" and again["no-data"]["score"] is not None
    assert again[CRASHES]["status"] == again["bad-facts"]["status"] == "error"
