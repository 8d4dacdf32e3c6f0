"""The main job: its plan (what a re-run skips or resumes) and, slow, a real end-to-end run that resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.main import plan

REPO = Path(__file__).resolve().parent.parent


def _cfg(root: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(
            "main", overrides=[f"paths.root_dir={root}", f"paths.output_dir={root / 'main'}", *overrides]
        )


def test_plan_takes_model_tasks_and_solutions_from_config(tmp_path: Path) -> None:
    steps = plan(_cfg(tmp_path))
    assert [s.module for s in steps] == ["src.train", "src.evaluate", "src.evaluate", "src.tables"]
    train, generate, baseline, tables = steps
    assert "+experiment=qlora_qwen05b_cpu" in train.overrides and train.skip_reason is None
    assert f"paths.root_dir={tmp_path}" in train.overrides  # every step gets this job's paths
    assert "tasks=[titanic,spooky-author-identification,bike-sharing-demand]" in generate.overrides
    assert "+experiment=main" in generate.overrides and "solution=baseline_gbdt" in baseline.overrides
    adapter = f"solution.llm.adapter={tmp_path}/outputs/train/qlora_qwen05b_cpu/main/adapter"
    assert adapter in generate.overrides and "+experiment=main" not in baseline.overrides
    assert any(
        o.startswith("results=[") and "main/dev/baseline_gbdt/results.jsonl" in o for o in tables.overrides
    )
    whole = plan(_cfg(tmp_path, "evaluate.tasks=null", "evaluate.solutions.baseline_gbdt=null"))
    assert len(whole) == 3 and not any(o.startswith("tasks=") for o in whole[1].overrides)


def test_rerun_reuses_or_resumes_the_fine_tune(tmp_path: Path) -> None:
    run = tmp_path / "outputs" / "train" / "qlora_qwen05b_cpu" / "main"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("x")
    assert "ckpt_path=last" in plan(_cfg(tmp_path))[0].overrides  # interrupted: continue
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "train_summary.json").write_text("{}")
    assert "already trained" in plan(_cfg(tmp_path))[0].skip_reason  # finished: reused


@pytest.mark.slow
def test_main_job_end_to_end_then_resume(tmp_path: Path, shared_dir: Path) -> None:
    """Tiny model + the constant baseline on one task: every step runs, a re-run skips what is done."""
    args = [f"paths.root_dir={tmp_path}", f"paths.shared_dir={shared_dir}", f"paths.cache_dir={tmp_path / 'c'}",
            "train.experiment=qlora_tiny", "evaluate.tasks=[titanic]", "evaluate.solutions.generate=null",
            "+evaluate.solutions.baseline_constant=[]", "evaluate.solutions.baseline_gbdt=null"]  # fmt: skip
    first = subprocess.run([sys.executable, "-m", "src.main", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "outputs" / "main" / "main"
    summary = json.loads((out / "main_summary.json").read_text())
    assert [s["returncode"] for s in summary["steps"]] == [0, 0, 0]
    assert summary["wandb_offline_runs"] == 2 and summary["train"]["steps"] > 0
    assert "== summary" in first.stdout and "fine-tune: tiny_llama" in first.stdout
    log = (out / "main.log").read_text()
    assert "== fine-tune: python -m src.train" in log and "== tables" in log
    paper = tmp_path / "paper"
    table1 = (paper / "table1.md").read_text()
    assert "titanic" in table1 and (paper / "table2.md").is_file() and (paper / "figure2.png").is_file()

    again = subprocess.run([sys.executable, "-m", "src.main", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:]
    assert "fine-tune: skipped (adapter already trained" in again.stdout
    assert "resuming: 1 of 1 records" in again.stdout or "1 of 1 records already" in again.stdout
    assert (paper / "table1.md").read_text() == table1
