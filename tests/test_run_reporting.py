"""Runs that say what happened (issue 29): reasons and log paths on the console, the exit code, per-task log
lines, and resume keyed by what the result depends on (an edited script is re-run, not resumed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HALF_ROWS = (
    "import pandas as pd\n"
    "s = pd.read_csv('input/sample_submission.csv')\n"
    "s.iloc[: len(s) // 2].to_csv('submission.csv', index=False)\n"
)
CONSTANT = "import shutil\nshutil.copy('input/sample_submission.csv', 'submission.csv')\n"
ENV = {**os.environ, "WANDB_MODE": "offline"}


def _evaluate(tmp_path: Path, shared_dir: Path, script: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "src.evaluate", "tasks=titanic", f"solution={script}", "logger=none",
        "progress=false", f"paths.cache_dir={tmp_path / 'cache'}", f"paths.shared_dir={shared_dir}",
        f"hydra.run.dir={tmp_path / 'run'}", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)


def _record(tmp_path: Path) -> dict:
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def test_an_invalid_record_says_why_where_its_log_is_and_exits_non_zero(
    tmp_path: Path, shared_dir: Path
) -> None:
    script = tmp_path / "half.py"
    script.write_text(HALF_ROWS)
    proc = _evaluate(tmp_path, shared_dir, script)
    assert proc.returncode == 1, proc.stderr[-2000:]
    console = proc.stdout + proc.stderr
    assert "titanic (seed 0) invalid: 89 rows, expected 178 (one per test id)" in console
    assert f"log: {tmp_path / 'run'}" in console and "sandbox.stderr.log" in console
    assert "fail_on_invalid=false" in proc.stderr  # the way out is named...
    log_text = (tmp_path / "run" / "evaluate.log").read_text()
    assert "start titanic (seed 0)" in log_text
    assert "finish titanic (seed 0): invalid, accuracy -" in log_text and "89 rows, expected 178" in log_text
    quiet = _evaluate(tmp_path, shared_dir, script, "fail_on_invalid=false")  # ...and applying it works
    assert quiet.returncode == 0, quiet.stderr[-2000:]


def test_an_edited_script_is_re_run_not_resumed(tmp_path: Path, shared_dir: Path) -> None:
    script = tmp_path / "mine.py"
    script.write_text(HALF_ROWS)
    assert _evaluate(tmp_path, shared_dir, script, "fail_on_invalid=false").returncode == 0
    first = _record(tmp_path)
    assert first["status"] == "invalid" and first["inputs_digest"]
    _evaluate(tmp_path, shared_dir, script, "fail_on_invalid=false")
    assert _record(tmp_path)["started_at"] == first["started_at"]  # unchanged inputs: resumed
    assert "resuming: 1 of 1 records" in (tmp_path / "run" / "evaluate.log").read_text()
    script.write_text(CONSTANT)  # the fix
    fixed = _evaluate(tmp_path, shared_dir, script)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    again = _record(tmp_path)
    assert again["status"] == "ok" and again["score"] is not None
    assert again["inputs_digest"] != first["inputs_digest"]
    records = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(records) == 1 and again["started_at"] != first["started_at"]  # replaced, not kept beside


def test_help_is_a_usage_block_not_the_config_dump() -> None:
    for entry, usage in (
        ("generate", "python -m src.generate task=<slug or task folder>"),
        ("evaluate", "python -m src.evaluate [suite=dev]"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", f"src.{entry}", "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-1000:]
        assert proc.stdout.startswith(usage) and "Common commands:" in proc.stdout
        assert "sha256" not in proc.stdout and "_target_" not in proc.stdout  # no config dump
        assert len(proc.stdout.splitlines()) < 80


def test_the_tables_fix_for_missing_records_works_when_applied(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "src.tables", "from_records=true", f"out_dir={tmp_path / 'paper'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "point records_dir at a folder holding results.jsonl" in proc.stderr
    fix = proc.stderr.split("records_dir=")[1].split(")")[0]  # the suggested value, as printed
    applied = subprocess.run(
        [*cmd, f"records_dir={fix}"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert (tmp_path / "paper" / "table1.md").is_file()
