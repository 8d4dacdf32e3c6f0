"""W&B runs of evaluation and generation: the values logged are read back from the offline run files."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from src.evaluate import evaluate
from src.reporting.runlog import RunLogger, record_summary, variant_axes
from src.reporting.wandb_offline import OfflineRun, offline_runs

REPO = Path(__file__).resolve().parent.parent


def _runs(folder: Path, n: int) -> list[OfflineRun]:
    """The offline runs under `folder` once `n` of them are complete: wandb-core writes the run log in its own
    process, and `finish()` can return before the last records land on a busy machine."""
    deadline = time.monotonic() + 60
    while True:
        runs = offline_runs(folder)
        if sum(r.exit_code is not None for r in runs) >= n or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _cfg(tmp_path: Path, shared_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(
            "evaluate",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.shared_dir={shared_dir}",
                "name=dev/baseline_constant",
                "progress=false",
                "show_table=false",
                *overrides,
            ],
        )


def test_evaluation_runs_are_logged_and_read_back(tmp_path: Path, shared_dir: Path) -> None:
    cfg = _cfg(tmp_path, shared_dir, "tasks=[titanic]", "seeds=[0,1]", "+group=exp_test")
    out = evaluate(cfg)
    runs = {r.job_type + ":" + r.name: r for r in _runs(tmp_path / "run", 3)}
    assert sorted(runs) == [
        "evaluate:titanic/baseline_constant/seed0",
        "evaluate:titanic/baseline_constant/seed1",
        "suite:dev/baseline_constant/suite",
    ]
    record = next(r for r in out["records"] if r["seed"] == 1)
    run = runs["evaluate:titanic/baseline_constant/seed1"]
    assert run.group == "exp_test" and run.project == "pipesynth" and run.exit_code == 0
    assert {"evaluate", "task=titanic", "seed=1", "solution=baseline_constant"} <= set(run.tags)
    assert run.summary["score"] == record["score"] and run.summary["status"] == "ok"
    assert run.summary["position"] == record["rating"]["position"]
    assert run.summary["teams"] == record["rating"]["teams"] == 4549
    assert abs(run.summary["beaten_pct"] - 100 * record["rating"]["beaten_fraction"]) < 1e-9
    assert run.summary["medal"] == (record["rating"]["medal"] or "none")
    assert run.summary["seconds"] == record["seconds"]
    assert run.config["task"] == "titanic" and run.config["seed"] == 1
    assert run.config["solution"]["name"] == "baseline_constant"
    assert run.artifacts == [
        {"name": "titanic-baseline_constant-seed1", "type": "solution", "files": ["solution.py"]}
    ]
    suite = runs["suite:dev/baseline_constant/suite"]
    assert suite.summary["records"] == 2 and suite.summary["valid"] == 2
    assert suite.summary["results"]["nrows"] == 2  # the W&B Table of the suite
    # resume: nothing new to run -> no new runs
    evaluate(cfg)
    assert len(_runs(tmp_path / "run", 3)) == 3


def test_csv_and_none_loggers(tmp_path: Path, shared_dir: Path) -> None:
    cfg = _cfg(tmp_path / "c", shared_dir, "tasks=[titanic]", "logger=csv")
    record = evaluate(cfg)["records"][0]
    folders = sorted(p for p in (tmp_path / "c" / "run" / "csv").iterdir() if p.is_dir())
    assert len(folders) == 2  # the record's run and the suite's
    rows = list(csv.DictReader((folders[-1] / "metrics.csv").open()))
    assert float(rows[0]["score"]) == record["score"]
    assert "titanic" in (folders[-1] / "hparams.yaml").read_text()
    cfg = _cfg(tmp_path / "n", shared_dir, "tasks=[titanic]", "logger=none")
    evaluate(cfg)
    assert not (tmp_path / "n" / "run" / "wandb").exists() and not (tmp_path / "n" / "run" / "csv").exists()


def test_generation_run_carries_axes_summary_and_artifact(tmp_path: Path) -> None:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "generate",
            overrides=[
                f"paths.output_dir={tmp_path}",
                "task=titanic",
                "refine=multi_role",
                "temperature=0.5",
            ],
        )
    summary = {
        "task": "titanic", "status": "ok", "validation_score": 0.81, "rank": 2,
        "timings": {"instruct_s": 3.5, "refine_s": 1.25, "total_s": 9.0},
        "llm": {"requests": 5, "calls": 4, "cache_hits": 1, "prompt_tokens": 900, "completion_tokens": 300,
                "cost_usd": 0.0},
    }  # fmt: skip
    for name in ("instruction.md", "solution.py", "journal.json"):
        (tmp_path / name).write_text("{}" if name.endswith(".json") else name)
    RunLogger(cfg, tmp_path).log_generation(cfg, summary, tmp_path)
    (run,) = _runs(tmp_path, 1)
    assert {"refine=multi_role", "coder=compiler", "model=qwen25_coder_05b", "temperature=0.5", "k=3"} <= set(
        run.tags
    )
    assert any(t.startswith("adapter=") for t in run.tags)
    assert run.summary["validation_score"] == 0.81 and run.summary["seconds/refine"] == 1.25
    assert run.summary["llm/requests"] == 5 and run.summary["llm/tokens"] == 1200
    assert run.artifacts[0]["files"] == ["instruction.md", "journal.json", "solution.py"]
    assert run.config["refine"]["name"] == "multi_role" and run.config["temperature"] == 0.5


def test_axes_are_found_for_new_config_groups() -> None:
    variant = OmegaConf.create(
        {"name": "g", "k": 3, "retrieval": {"mode": "context", "n": 5}, "search": {"name": "greedy"},
         "llm": {"adapter": None, "temperature": 0.7, "model": {"name": "m"}}, "temperature": 0.2}
    )  # fmt: skip
    assert variant_axes(OmegaConf.create({"llm": {"adapter": "/a/b/exp/run/adapter", "cache": {"mode": "replay"}}}),
                        ["adapter"], exclude=["cache"]) == {"adapter": "exp/run/adapter"}  # fmt: skip
    axes = variant_axes(variant, ["adapter", "temperature", "k"])
    assert axes == {"retrieval": "context", "search": "greedy", "model": "m", "adapter": None,
                    "temperature": 0.2, "k": 3}  # fmt: skip


def test_record_summary_reads_interval_fields() -> None:
    record = {
        "task": "t", "solution": "s", "seed": 0, "score": 1.0, "status": "ok", "validation_score": 0.9,
        "position_low": 3, "position_high": 9, "medal_probs": {"gold": 0.1, "none": 0.9}, "medal_certain": False,
        "rating": {"position": 5, "teams": 10, "beaten_fraction": 0.5, "medal": "gold"},
    }  # fmt: skip
    out = record_summary(record)
    assert (out["position"], out["position_low"], out["position_high"]) == (5, 3, 9)
    assert out["medal_probs/gold"] == 0.1 and out["medal_certain"] is False and out["beaten_pct"] == 50.0
    assert json.dumps(out)
