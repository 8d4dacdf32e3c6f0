"""Repair: the failing step is found from the script's stage markers and replaced or dropped; real failures in
the sandbox are repaired into runs that succeed; every round is recorded; the loop ends when nothing is left."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.pipeline.code.base import Coder, CodeResult, parse_cv_score
from src.pipeline.code.compiler import ModelSpec, Plan, default_plan, diagnose, finalize, repair_plan
from src.sandbox import ExecutionResult, Sandbox
from tests.test_compiler_render import make_task

REPO = Path(__file__).resolve().parent.parent


def _coder():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("coder/compiler")
    coder = instantiate(cfg.coder)
    assert isinstance(coder, Coder)
    return coder


def _failed(stage: str, error: str = "ValueError: boom", status: str = "error") -> ExecutionResult:
    trace = f'Traceback (most recent call last):\n  File "solution.py", line 9, in <module>\n{error}\n'
    return ExecutionResult(
        status=status,
        exit_code=1 if status == "error" else None,
        duration_s=1.0,
        peak_memory_mb=10.0,
        stdout_tail="columns: 3 numeric\n",
        stderr_tail=f"[stage] load @0.0s\n[stage] {stage} @0.5s\n" + (trace if status == "error" else ""),
        traceback=trace if status == "error" else None,
        workdir="/tmp/x",
        isolation="none",
    )


FACTS = {
    "data_type": "tabular",
    "task_type": "binary_classification",
    "id_column": "id",
    "targets": ["y"],
    "submission_columns": ["y"],
    "metric": "roc_auc",
}


def _plan(families: list[str], facts: dict = FACTS) -> Plan:
    plan = default_plan(facts)
    plan.models = [ModelSpec(family=f) for f in families]
    return finalize(plan, facts)


def test_diagnose_reads_stage_status_and_error() -> None:
    diag = diagnose(_failed("fit:knn", "ValueError: Expected n_neighbors <= n_samples_fit"))
    assert (diag.status, diag.stage) == ("error", "fit:knn")
    assert diag.error.startswith("ValueError: Expected n_neighbors")
    assert diagnose("Traceback ...\nMemoryError: Unable to allocate 8 GiB").status == "memory"
    assert diagnose(_failed("cv:y").to_dict()).stage == "cv:y"


def test_failing_model_falls_back_to_a_simpler_family_then_gives_up() -> None:
    plan = _plan(["knn"])
    chain = []
    while plan is not None and len(chain) < 20:
        chain.append(plan.models[0].family)
        plan = repair_plan(plan, _failed(f"fit:{plan.models[0].family}"), FACTS)
    # catalog `simpler` links down to the constant model, then the default plan's own chain; never a loop
    assert chain[:4] == ["knn", "linear", "constant", "lightgbm"]
    assert plan is None and len(chain) < 20


def test_failing_model_is_dropped_from_an_ensemble() -> None:
    plan = _plan(["lightgbm", "svm", "knn"])
    fixed = repair_plan(plan, _failed("predict:svm"), FACTS)
    assert [m.family for m in fixed.models] == ["lightgbm", "knn"]
    assert fixed.history[-1]["action"] == "drop model svm from the ensemble"
    assert [m.family for m in plan.models] == ["lightgbm", "svm", "knn"]  # the input plan is untouched


def test_failing_feature_steps_are_dropped() -> None:
    plan = _plan(["lightgbm"])
    assert not repair_plan(plan, _failed("features:datetime"), FACTS).preprocessing.datetime_features
    assert not repair_plan(plan, _failed("features:compound"), FACTS).preprocessing.split_compound
    plan.preprocessing.text.enabled = True
    assert not repair_plan(plan, _failed("features:text"), FACTS).preprocessing.text.enabled
    plan.preprocessing.text.representation = "both"
    for status in ("error", "timeout"):  # the encoder failed, or was too slow: TF-IDF stays
        repaired = repair_plan(plan, _failed("features:embeddings", status=status), FACTS)
        assert repaired.preprocessing.text.representation == "tfidf"
        assert repaired.history[-1]["action"] == "drop the sentence embeddings: TF-IDF only"


def test_timeout_cuts_cost_each_round() -> None:
    facts = FACTS | {"data_type": "text"}
    plan = _plan(["linear", "knn"], facts)
    first = repair_plan(plan, _failed("fit:knn", status="timeout"), facts)
    assert [m.family for m in first.models] == ["linear"] and first.validation.n_splits == 3
    assert first.preprocessing.text.analyzers == ["word"] and first.validation.time_budget_s < 35
    second = repair_plan(first, _failed("fit:linear", status="timeout"), facts)
    assert second.preprocessing.text.max_features < first.preprocessing.text.max_features
    assert [h["status"] for h in second.history] == ["timeout", "timeout"]
    assert second.history[0]["stage"] == "fit:knn" and second.history[1]["round"] == 2


def test_unrecoverable_failure_returns_none() -> None:
    assert (
        repair_plan(default_plan(FACTS), _failed("load", "FileNotFoundError: input/train.csv"), FACTS) is None
    )


def _tiny_text_task(root: Path, data_type: str) -> tuple[Path, dict]:
    """Comments made of one-letter tokens: a word TF-IDF finds no vocabulary at all (a real failure)."""
    rng = np.random.default_rng(0)
    n = 160
    comments = [" ".join(rng.choice(list("abcxyz"), 6)) for _ in range(n)]
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(n)], "size": rng.normal(size=n), "comment": comments})
    frame["y"] = frame["comment"].str.count("a") > 1
    facts = {
        "slug": "tiny",
        "data_type": data_type,
        "task_type": "binary_classification",
        "id_column": "id",
        "targets": ["y"],
        "submission_columns": ["y"],
        "metric": "roc_auc",
        "higher_is_better": True,
    }
    public = root / "public"
    public.mkdir(parents=True)
    frame.iloc[:120].to_csv(public / "train.csv", index=False)
    frame.iloc[120:].drop(columns="y").to_csv(public / "test.csv", index=False)
    frame.iloc[120:][["id"]].assign(y=0.5).to_csv(public / "sample_submission.csv", index=False)
    (public / "task.json").write_text(json.dumps(facts))
    return public, facts


def _run(result: CodeResult, public: Path, where: Path) -> ExecutionResult:
    where.mkdir(parents=True, exist_ok=True)
    script = where / f"attempt{result.attempt}.py"
    script.write_text(result.code)
    return Sandbox(timeout_s=120).run(script, public, where / f"work{result.attempt}")


def _repair_until_ok(
    coder, instruction: str, public: Path, facts: dict, where: Path
) -> tuple[list, CodeResult]:
    result = coder.generate(instruction, facts)
    runs = []
    for _ in range(4):
        execution = _run(result, public, where)
        runs.append(execution)
        if execution.status == "ok":
            return runs, result
        repaired = coder.repair(result, execution, facts)
        assert repaired is not None, execution.stderr_tail
        result = repaired
    raise AssertionError(f"not repaired: {[r.status for r in runs]}")


def test_real_model_failure_is_repaired(tmp_path: Path) -> None:
    # 120 train rows, so a fold has 96: k=150 neighbours cannot exist -> sklearn raises at predict time
    public, facts = make_task(tmp_path / "task", "binary", n_train=120, n_test=40)
    coder = _coder()
    runs, final = _repair_until_ok(
        coder, "Model architecture:\n- KNeighborsClassifier with n_neighbors=150.", public, facts, tmp_path
    )
    assert [r.status for r in runs] == ["error", "ok"]
    assert "n_neighbors" in (runs[0].traceback or "")
    assert final.attempt == 1 and final.plan["models"][0]["family"] == "linear"
    (round_,) = final.plan["history"]
    assert round_["stage"].endswith(":knn") and round_["action"] == "model knn failed: fall back to linear"
    assert parse_cv_score(runs[-1].stdout_tail) is not None


def test_real_text_step_failure_is_repaired(tmp_path: Path) -> None:
    coder = _coder()
    # text task: the text stays, as character n-grams counted from the first occurrence
    public, facts = _tiny_text_task(tmp_path / "text", "text")
    runs, final = _repair_until_ok(coder, "", public, facts, tmp_path / "a")
    assert [r.status for r in runs] == ["error", "ok"] and "empty vocabulary" in runs[0].traceback
    assert final.plan["history"][0]["action"] == "text features: character n-grams only, min_df=1"
    # tabular task whose instruction asked for TF-IDF: the text step is dropped
    public, facts = _tiny_text_task(tmp_path / "tab", "tabular")
    runs, final = _repair_until_ok(
        coder, "Data preprocessing:\n- TF-IDF of the comment.", public, facts, tmp_path / "b"
    )
    assert [r.status for r in runs] == ["error", "ok"]
    assert final.plan["history"][0]["action"] == "drop the text feature step"
    assert not final.plan["preprocessing"]["text"]["enabled"]
