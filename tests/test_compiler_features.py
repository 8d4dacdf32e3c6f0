"""Compiled scripts: text-pair relation features, per-class probability output scored by the task's metric, and
the out-of-fold file the search grades (src.pipeline.search.OofRunner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.pipeline.code.compiler import CompilerCoder, default_plan
from src.pipeline.search import DERIVED_CACHES, OofRunner
from src.sandbox import Sandbox
from src.sandbox.inputs import DERIVED_DIR, keep_derived, overlay_inputs
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


def test_a_pair_task_gets_pair_only_moves_and_the_pair_only_script_runs(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A pair task (two phrase columns) gets the pair moves, a table without text does not; the pair-only
    script drops each phrase's own TF-IDF block and keeps the cross features."""
    from src.pipeline.search.moves import has_text_pairs, improve_moves

    frame = _pairs()
    facts = {"data_type": "text", "task_type": "binary_classification", "metric": "roc_auc"}
    facts |= {"higher_is_better": True, "id_column": "id", "targets": ["y"], "submission_columns": ["y"]}
    public = write_public(tmp_path, frame.iloc[:600], frame.iloc[600:], facts)
    assert has_text_pairs(public, facts, max_categories=50)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"id": range(200), "a": rng.normal(size=200), "c": rng.choice(["x", "y"], 200)})
    table["y"] = rng.integers(0, 2, 200)
    plain = write_public(tmp_path / "plain", table.iloc[:150], table.iloc[150:], facts)
    assert not has_text_pairs(plain, facts, max_categories=50)

    plan = default_plan(facts)
    moves = dict(improve_moves(plan, text_pairs=True))
    assert moves["features: text-pair cross features only"].preprocessing.text_pairs_only
    assert "features: text-pair cross features only" not in dict(improve_moves(plan, text_pairs=False))
    pair_only, out = _run(public, facts, sandbox, tmp_path / "w1", text_pairs_only=True)
    assert "text-pair features over ['anchor', 'target_phrase']" in out
    assert ", 0 text, dropped ['anchor', 'target_phrase']" in out  # no phrase is a feature alone
    assert pair_only > 0.95  # the overlap alone says it all


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


SYNONYMS = [
    ("big", "large"), ("small", "little"), ("quick", "fast"), ("happy", "glad"), ("angry", "furious"),
    ("old", "ancient"), ("quiet", "silent"), ("wet", "damp"), ("rich", "wealthy"), ("sick", "ill"),
    ("car", "automobile"), ("dog", "puppy"), ("house", "home"), ("doctor", "physician"), ("film", "movie"),
    ("road", "street"), ("child", "kid"), ("shop", "store"), ("sofa", "couch"), ("rock", "stone"),
]  # fmt: skip


def _paraphrases(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """Two short phrases per row that share no word; the label says whether they mean the same thing."""
    rng = np.random.default_rng(seed)
    adjectives, nouns = SYNONYMS[:10], SYNONYMS[10:]
    rows = []
    for i in range(n):
        adj, noun = adjectives[rng.integers(10)], nouns[rng.integers(10)]
        same = int(rng.integers(0, 2))
        if same:
            other_adj, other_noun = adj, noun
        else:
            other_adj = adjectives[(adjectives.index(adj) + rng.integers(1, 10)) % 10]
            other_noun = nouns[(nouns.index(noun) + rng.integers(1, 10)) % 10]
        flip = int(rng.integers(0, 2))
        rows.append(
            {
                "id": i,
                "first": f"the {adj[flip]} {noun[flip]}",
                "second": f"a {other_adj[1 - flip]} {other_noun[1 - flip]}",
                "y": same,
            }
        )
    return pd.DataFrame(rows)


def test_sentence_embeddings_relate_paraphrases_and_are_encoded_once_per_search(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    frame = _paraphrases()
    facts = {"data_type": "text", "task_type": "binary_classification", "metric": "roc_auc"}
    facts |= {"higher_is_better": True, "id_column": "id", "targets": ["y"], "submission_columns": ["y"]}
    public = write_public(tmp_path, frame.iloc[:400], frame.iloc[400:], facts)
    plan = default_plan(facts)
    coder = CompilerCoder(time_budget_s=30)
    tfidf = OofRunner(sandbox, public, tmp_path / "w1", facts)(coder.from_plan(plan, facts).code, "node")
    plan.preprocessing.text.representation = "both"
    code = coder.from_plan(plan, facts).code
    assert "sentence embeddings" in code.split('"""')[1]  # the plan summary names them
    runner = OofRunner(sandbox, public, tmp_path / "w2", facts)
    first = runner(code, "first")
    assert tfidf.ok and first.ok, (tfidf.reason, first.reason)
    # no word is shared, so TF-IDF and token overlap see nothing; the embeddings see the meaning
    assert tfidf.score < 0.7 and first.score > 0.85, (tfidf.score, first.score)
    assert "sentence embeddings of" in first.executions[0]["stdout_tail"]
    # the search hands the cached vectors to the next run: same score, nothing encoded again
    second = runner(code, "second")
    assert second.ok and second.score == first.score
    assert "sentence embeddings of" not in second.executions[0]["stdout_tail"]
    assert list((tmp_path / "w2" / "inputs" / "embeddings").glob("*.npy"))
    assert not (public / "embeddings").exists()  # the public files are never written
    # the build keeps them, and the chosen script's final run reads them as input/embeddings/
    keep_derived(runner.inputs_dir, DERIVED_CACHES, tmp_path / "build" / DERIVED_DIR)
    assert not (runner.inputs_dir / "embeddings").exists()
    inputs = overlay_inputs(public, tmp_path / "final_inputs", tmp_path / "build" / DERIVED_DIR)
    script = tmp_path / "solution.py"
    script.write_text(code)
    final = sandbox.run(script, inputs, tmp_path / "final")
    assert final.status == "ok", final.message
    assert "sentence embeddings of" not in final.stdout_tail
