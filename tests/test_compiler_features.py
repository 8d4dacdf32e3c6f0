"""Compiled scripts: text-pair relation features, per-class probability output scored by the task's metric, and
the out-of-fold file the search grades (src.pipeline.search.OofRunner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.pipeline.compiler import CompilerCoder, default_plan
from src.pipeline.search import OofRunner
from src.sandbox import Sandbox
from tests.test_search import write_public


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(isolation="none", timeout_s=300)


def _pairs(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """Two short phrases per row; the label says whether the second reuses the first's words."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:03d}" for i in range(300)])
    rows = []
    for i in range(n):
        a = list(rng.choice(vocab, 3, replace=False))
        same = int(rng.integers(0, 2))
        b = (a[:2] if same else list(rng.choice(vocab, 2, replace=False))) + [str(rng.choice(vocab))]
        rng.shuffle(b)
        rows.append({"id": i, "anchor": " ".join(a), "target_phrase": " ".join(b), "y": same})
    return pd.DataFrame(rows)


def _run(public: Path, facts: dict, sandbox: Sandbox, work: Path, **edits: object) -> tuple[float, str]:
    plan = default_plan(facts)
    for key, value in edits.items():
        setattr(plan.preprocessing, key, value)
    code = CompilerCoder(time_budget_s=30).from_plan(plan, facts).code
    outcome = OofRunner(sandbox, public, work, facts)(code, "node")
    assert outcome.ok, outcome.reason
    return float(outcome.score), outcome.executions[0]["stdout_tail"]  # type: ignore[arg-type]


def test_text_pair_features_relate_two_text_columns(tmp_path: Path, sandbox: Sandbox) -> None:
    frame = _pairs()
    facts = {"data_type": "text", "task_type": "binary_classification", "metric": "roc_auc"}
    facts |= {"higher_is_better": True, "id_column": "id", "targets": ["y"], "submission_columns": ["y"]}
    public = write_public(tmp_path, frame.iloc[:600], frame.iloc[600:], facts)
    with_pairs, out = _run(public, facts, sandbox, tmp_path / "w1")
    assert "text-pair features over ['anchor', 'target_phrase']" in out
    without, out_plain = _run(public, facts, sandbox, tmp_path / "w2", text_pairs=False)
    assert "text-pair features" not in out_plain
    # each phrase alone says nothing about the label; their overlap says it all
    assert with_pairs > 0.95 and without < 0.7


def test_per_class_probabilities_scored_with_the_task_metric(tmp_path: Path, sandbox: Sandbox) -> None:
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 3))
    label = np.array(["cat", "dog", "eel"])[np.argmax(x + rng.normal(scale=0.8, size=(n, 3)), axis=1)]
    frame = pd.DataFrame({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "kind": label})
    facts = {"data_type": "tabular", "task_type": "multiclass_classification"}
    facts |= {"metric": "multiclass_log_loss", "higher_is_better": False, "id_column": "id"}
    facts |= {
        "targets": ["kind"],
        "submission_columns": ["cat", "dog", "eel"],
        "class_labels": ["cat", "dog", "eel"],
    }
    public = write_public(tmp_path, frame.iloc[:500], frame.iloc[500:], facts)
    plan = default_plan(facts)
    code = CompilerCoder(time_budget_s=30).from_plan(plan, facts).code
    assert 'OUTPUT = "proba_matrix"' in code or "OUTPUT = 'proba_matrix'" in code
    assert "multiclass_log_loss of one target column" in code  # the script validates with the task's metric
    outcome = OofRunner(sandbox, public, tmp_path / "w", facts)(code, "node")
    assert outcome.ok, outcome.reason
    assert outcome.score < np.log(3) - 0.2  # well below the uniform guess
    workdir = Path(outcome.executions[0]["workdir"])
    submission = pd.read_csv(workdir / "submission.csv")
    assert list(submission.columns) == ["id", "cat", "dog", "eel"]
    assert np.allclose(submission[["cat", "dog", "eel"]].sum(axis=1), 1.0)
    oof = pd.read_csv(workdir / "oof_submission.csv")
    assert list(oof.columns) == list(submission.columns) and len(oof) == 500
