"""Blends of whole solutions (src.pipeline.search.blend): weights fitted on out-of-fold predictions, one script.

- The combination rules: a weighted vote for labels, a weighted mean (rows renormalised for per-class
  probabilities) otherwise; the forward selection finds a mix better than either member when their errors are
  independent, and keeps the best member alone when the other only adds noise.
- A rendered blend script runs its members, combines their submissions with the fitted weights, and writes the
  blended out-of-fold file; the stack variant's out-of-fold predictions are cross-validated.
- With `diversify_prob`, an improvement goes to the best node of another kind of solution instead of the best.
- On a real task (House Prices; averaging regressors of different families helps) the search ends with a blend node whose inner-validation score is what the weights
  were fitted to, chosen without the private answers, and whose script grades valid on the private test.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.pipeline.code.compiler import CompilerCoder, ModelSpec, default_plan
from src.pipeline.journal import Node
from src.pipeline.refine import Refined
from src.pipeline.search import OofRunner, Search, SearchState, blend_candidates
from src.pipeline.search.blend import Member, fit_weights, render_blend, stack_score
from src.pipeline.search.blend_outputs import (
    PUNCTUATION,
    blend_arrays,
    blend_frames,
    row_statistics,
    text_statistics,
)
from src.sandbox import Sandbox
from src.tasks.grading import grade
from src.tasks.metrics import get_metric
from src.tasks.prepare import prepare_task
from src.tasks.registry import load_task
from tests.search_context import search_context


def test_vote_and_mean() -> None:
    labels = [np.array(["a", "b", "b"]), np.array(["a", "a", "c"]), np.array(["c", "a", "c"])]
    # third row: b 0.5 against c 0.3 + 0.2 — a tie goes to the heaviest member's label
    assert blend_arrays(labels, [0.5, 0.3, 0.2], "label").tolist() == ["a", "b", "b"]
    assert blend_arrays(labels, [0.2, 0.3, 0.5], "label").tolist() == ["c", "a", "c"]
    probs = [np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([[0.2, 0.4], [0.6, 0.6]])]
    mixed = blend_arrays(probs, [1, 1], "mean", normalize=True)
    assert np.allclose(mixed.sum(axis=1), 1.0) and np.allclose(mixed[0], [0.5 / 0.8, 0.3 / 0.8])
    assert np.allclose(blend_arrays([np.array([1.0, 2.0]), np.array([3.0, 6.0])], [3, 1], "mean"), [1.5, 3.0])


def test_forward_selection_mixes_independent_errors_and_drops_noise() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    a, b = y + rng.normal(size=2000), y + rng.normal(size=2000)
    rmse = get_metric("rmse")
    weights, score = fit_weights(y, [a, b], rmse)
    assert 0.3 <= weights[0] <= 0.7 and score < min(rmse(y, a), rmse(y, b)) - 0.1
    noise = a + rng.normal(scale=5.0, size=2000)  # a, plus noise only
    weights, score = fit_weights(y, [a, noise], rmse)
    assert weights.tolist() == [1.0, 0.0] and score == pytest.approx(rmse(y, a))


def test_blend_candidates_take_each_kind_of_solution_first() -> None:
    def node(i: int, score: float, family: str, analyzers: list[str]) -> Node:
        text = {"enabled": True, "analyzers": analyzers}
        plan = {"models": [{"family": family}], "preprocessing": {"text": text}}
        return Node(id=f"{i}-search", stage="search", step=i, code="x", plan=plan, validation_score=score)

    ranked = [  # best first (log loss)
        node(1, 0.30, "naive_bayes", ["word", "char_wb"]),
        node(2, 0.31, "naive_bayes", ["word", "char_wb"]),
        node(3, 0.31, "naive_bayes", ["word", "char_wb"]),  # the same score as 2: counted once
        node(4, 0.32, "naive_bayes", ["word", "char_wb"]),
        node(5, 0.40, "linear", ["char_wb"]),
        node(6, 0.45, "naive_bayes", ["word"]),
        node(7, 0.50, "linear", ["char_wb"]),
    ]
    outputs = {n.id: Path(n.id) for n in ranked if n.id != "7-search"}  # 7 left no outputs
    chosen = [n.id for n in blend_candidates(ranked, outputs, size=4)]
    assert chosen == ["1-search", "2-search", "5-search", "6-search"]


MEMBER = """
import numpy as np, pandas as pd
train = pd.read_csv("input/train.csv", dtype=str)
test = pd.read_csv("input/test.csv", dtype=str)
rng = np.random.default_rng({seed})
def probs(n, labels):
    p = rng.uniform(0.05, 0.4, size=(n, 3))
    if labels is not None:
        p[np.arange(len(labels)), pd.Series(labels).map({{"x": 0, "y": 1, "z": 2}}).to_numpy()] += {signal}
    return p / p.sum(axis=1, keepdims=True)
for name, frame, labels in (("submission.csv", test, None), ("oof_submission.csv", train, train["k"])):
    p = probs(len(frame), None if labels is None else labels.to_numpy())
    pd.DataFrame({{"id": frame["id"], "x": p[:, 0], "y": p[:, 1], "z": p[:, 2]}}).to_csv(name, index=False)
"""


MARKS = {"x": "!", "y": "?", "z": ";"}  # the class shows in the text's punctuation, which no member sees


def styled_text(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Four-word texts whose last mark is their class's in 80 % of rows (another class's otherwise)."""
    marks = [
        MARKS[k] if rng.random() < 0.8 else MARKS[rng.choice([c for c in MARKS if c != k])] for k in labels
    ]
    return [
        f"some words about {w}{m}"
        for w, m in zip(rng.choice(["it", "them", "us"], len(labels)), marks, strict=True)
    ]


def test_text_statistics_describe_only_free_text() -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "code": ["x1", "y2"],
            "n": [1, 2],
            "text": ["Hello there, you; all!", "one two three"],
        }
    )
    stats = text_statistics(frame, skip=("id",))
    assert stats is not None and all(c.startswith("text:") for c in stats.columns)
    assert stats["text:words"].tolist() == [4, 3] and stats["text:chars"].tolist() == [22, 13]
    counts = {mark: stats[f"text:count{i}"].tolist() for i, mark in enumerate(PUNCTUATION)}
    assert counts[","] == [1, 0] and counts[";"] == [1, 0] and counts["!"] == [1, 0] and counts["."] == [0, 0]
    assert text_statistics(frame[["id", "code", "n"]]) is None


def test_gradient_boosted_stack_learns_what_the_members_miss() -> None:
    rng = np.random.default_rng(0)
    n = 900
    labels = rng.choice(list("xyz"), n)
    train = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": styled_text(labels, rng), "k": labels})
    truth = pd.get_dummies(labels).astype(float).to_numpy()
    members = []
    for signal in (0.06, 0.03):  # weak members: noisy probabilities with a little of the label in them
        p = rng.uniform(0.05, 0.4, size=(n, 3)) + signal * truth
        members.append(p / p.sum(axis=1, keepdims=True))
    by_id = row_statistics(train, train.iloc[:0], "id", skip=("k",))
    assert by_id is not None
    loss = get_metric("multiclass_log_loss")
    linear = stack_score(truth, members, loss, learner="linear")
    boosted = stack_score(truth, members, loss, learner="gbdt", extra=by_id.loc[train["id"]].to_numpy())
    assert linear is not None and boosted is not None
    assert boosted < linear - 0.2, (linear, boosted)  # the punctuation says the class 80 % of the time
    with pytest.raises(ValueError, match="stack learner"):
        stack_score(truth, members, loss, learner="forest")


@pytest.mark.parametrize("method", ["weights", "stack", "stack_gbdt"])
def test_blend_script_combines_its_members(tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(1)
    labels = rng.choice(list("xyz"), 300)
    train = pd.DataFrame({"id": [f"r{i}" for i in range(300)], "text": styled_text(labels, rng), "k": labels})
    (tmp_path / "input").mkdir()
    train.to_csv(tmp_path / "input" / "train.csv", index=False)
    test = {"id": [f"t{i}" for i in range(50)], "text": styled_text(rng.choice(list("xyz"), 50), rng)}
    pd.DataFrame(test).to_csv(tmp_path / "input" / "test.csv", index=False)
    facts = {"id_column": "id", "targets": ["k"], "metric": "multiclass_log_loss"}
    strong, weak = (0.06, 0.03) if method == "stack_gbdt" else (0.6, 0.3)  # gbdt: the texts say more
    members = [
        Member("2-search", MEMBER.format(seed=2, signal=strong), 0.6, "a"),
        Member("3-search", MEMBER.format(seed=3, signal=weak), 0.4, "b"),
    ]
    if method == "weights":  # a member that fails is left out, the others' weights renormalised
        members.append(Member("4-search", "raise SystemExit('broken member')", 0.5, "c"))
    code = render_blend(members, facts, get_metric("multiclass_log_loss"), method=method)
    (tmp_path / "solution.py").write_text(code)
    done = subprocess.run([sys.executable, "solution.py"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    def read(where: Path) -> pd.DataFrame:
        return pd.read_csv(where, dtype=str, keep_default_na=False)

    blended = pd.read_csv(tmp_path / "oof_submission.csv")
    parts = [read(tmp_path / "members" / m.node_id / "oof_submission.csv") for m in members[:2]]
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert len(submission) == 50 and np.allclose(submission[["x", "y", "z"]].sum(axis=1), 1.0)
    if method == "weights":
        assert "member 4-search failed" in done.stdout
        expected = blend_frames(parts[:2], [0.6, 0.4], "id", "mean", normalize=True)
        assert np.allclose(
            blended[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(dtype=float)
        )
    else:  # cross-validated stack: better calibrated than the stronger member alone
        truth = pd.get_dummies(train["k"]).astype(float).to_numpy()
        loss = get_metric("multiclass_log_loss")
        member = parts[0][["x", "y", "z"]].to_numpy(dtype=float)
        stacked = blended[["x", "y", "z"]].to_numpy()
        assert loss(truth, stacked) < loss(truth, member)
        linear = stack_score(truth, [p[["x", "y", "z"]].to_numpy(dtype=float) for p in parts], loss)
        assert linear is not None
        if method == "stack_gbdt":  # the script's stack read the texts' punctuation from ./input/
            assert loss(truth, stacked) < linear - 0.1, (loss(truth, stacked), linear)


def test_search_ends_with_a_blend_on_a_real_task(kaggle_dir: Path, tmp_path: Path) -> None:
    sandbox = Sandbox(isolation="none", timeout_s=300)
    task = load_task(kaggle_dir, "house-prices-advanced-regression-techniques")
    prepared = prepare_task(task, tmp_path / "cache")
    facts = json.loads((prepared.public_dir / "task.json").read_text())
    coder = CompilerCoder(time_budget_s=60)
    ctx = search_context(prepared.public_dir, tmp_path / "work", sandbox, coder)
    journal = ctx.journal
    root = journal.add("instruction", instruction="start")
    refined = Refined(text="start", node_id=root.id, code=coder.from_plan(default_plan(facts), facts))
    hidden = tmp_path / "hidden-private"
    shutil.move(str(prepared.private_dir), hidden)  # chosen on inner validation only
    try:
        search = Search(
            policy="tree",
            budget_s=240,
            max_nodes=6,
            workers=1,
            num_drafts=4,
            ensemble_size=0,
            # room for every fold even on a busy machine (OpenMP threads spinning count as CPU): a node whose
            # budget cut a fold covers other rows, and only nodes over the best node's rows are blended
            node_time_budget_s=60,
        )
        chosen = search.search(ctx, refined)
    finally:
        shutil.move(str(hidden), prepared.private_dir)

    blends = [n for n in journal.nodes if n.stage == "search" and n.meta.get("kind") == "blend"]
    assert len(blends) == 1, [n.meta.get("move") for n in journal.nodes if n.stage == "search"]
    blend = blends[0]
    assert blend.status == "ok" and len(blend.meta["blend"]["members"]) >= 2
    # the blend's out-of-fold predictions, combined from its members' recorded outputs, score what the weights
    # were fitted to
    assert blend.validation_score == pytest.approx(blend.meta["blend"]["fitted_score"], abs=1e-9)
    members = [journal[m] for m in blend.meta["blend"]["members"]]
    assert all(blend.validation_score < m.validation_score for m in members)  # type: ignore[operator]  # rmse
    assert chosen.validated and chosen.validation_score is not None
    script = tmp_path / "blend.py"
    script.write_text(blend.code or "")
    result = sandbox.run(script, prepared.public_dir, tmp_path / "run-blend")
    assert result.status == "ok", result.message
    assert grade(prepared, Path(result.workdir) / "submission.csv").valid
    # run afresh, the script's members reproduce the out-of-fold predictions the node was scored on
    rerun = OofRunner(sandbox, prepared.public_dir, tmp_path / "oof", facts)
    score, _, _ = rerun.grade_oof(Path(result.workdir) / "oof_submission.csv", tmp_path / "oof-grade")
    assert score == pytest.approx(blend.validation_score, rel=1e-6)


def test_diversify_improves_the_best_node_of_another_kind(tmp_path: Path) -> None:
    facts = {"data_type": "tabular", "task_type": "binary_classification", "metric": "roc_auc"}
    facts |= {"id_column": "id", "targets": ["y"], "higher_is_better": True, "slug": "t"}
    (tmp_path / "task.json").write_text(json.dumps(facts))
    ctx = search_context(tmp_path, tmp_path, None, CompilerCoder())
    journal = ctx.journal
    lgbm, trees = default_plan(facts), default_plan(facts)
    trees.models = [ModelSpec(family="extra_trees")]
    best = journal.add("search", plan=lgbm.to_dict()).finish("ok", validation_score=0.80)
    other = journal.add("search", parent=best, plan=trees.to_dict()).finish("ok", validation_score=0.78)

    def parent_of_next(prob: float) -> str:
        search = Search(policy="tree", num_drafts=0, debug_prob=0.0, ensemble_size=0, diversify_prob=prob)
        state = SearchState(
            nodes=[best, other], baseline_asked=True
        )  # the baseline move has run: this is move 2+
        proposal = search._next(ctx, journal, state, random.Random(0), [])
        assert proposal is not None and proposal.kind == "improve"
        return proposal.parent.id

    assert parent_of_next(0.0) == best.id  # AIDE: improve the best node
    assert parent_of_next(1.0) == other.id  # the best extra-trees node, a different kind of solution


def test_search_on_a_real_text_task_stacks_with_the_best_learner(kaggle_dir: Path, tmp_path: Path) -> None:
    sandbox = Sandbox(isolation="none", timeout_s=300)
    prepared = prepare_task(load_task(kaggle_dir, "spooky-author-identification"), tmp_path / "cache")
    facts = json.loads((prepared.public_dir / "task.json").read_text())
    full = pd.read_csv(prepared.public_dir / "train.csv")
    rows = full.groupby(facts["targets"][0], group_keys=False).sample(frac=0.1, random_state=0)  # ~1,570 rows
    public = tmp_path / "public"  # a small public task: the search's members run in seconds
    public.mkdir()
    rows.iloc[:1200].to_csv(public / "train.csv", index=False)
    test = rows.iloc[1200:].drop(columns=facts["targets"])
    test.to_csv(public / "test.csv", index=False)
    sample = pd.read_csv(prepared.public_dir / "sample_submission.csv", nrows=1)
    sample = pd.concat([sample] * len(test), ignore_index=True).assign(
        **{facts["id_column"]: test[facts["id_column"]].to_numpy()}
    )
    sample.to_csv(public / "sample_submission.csv", index=False)
    (public / "task.json").write_text(json.dumps(facts))
    coder = CompilerCoder(time_budget_s=30)
    ctx = search_context(public, tmp_path / "work", sandbox, coder)
    root = ctx.journal.add("instruction", instruction="start")
    refined = Refined(text="start", node_id=root.id, code=coder.from_plan(default_plan(facts), facts))
    search = Search(policy="tree", budget_s=200, max_nodes=6, workers=1, num_drafts=3, ensemble_size=0)
    search.search(ctx, refined)

    blend = next(n for n in ctx.journal.nodes if n.meta.get("kind") == "blend")
    chosen = blend.meta["blend"]
    scores = {"weights": chosen["fitted_score"], **chosen["stack_scores"]}
    assert set(scores) == {"weights", "stack", "stack_gbdt"}  # both stacks scored on inner validation
    assert chosen["method"] == min(scores, key=scores.get)  # log loss: the lowest wins
    assert blend.validation_score == pytest.approx(scores[chosen["method"]], abs=1e-9)
    script = tmp_path / "blend.py"
    script.write_text(blend.code or "")
    result = sandbox.run(script, public, tmp_path / "run-blend")
    assert result.status == "ok", result.message
    # run afresh, the script (its members and its stacker) reproduces the out-of-fold score it was chosen on
    rerun = OofRunner(sandbox, public, tmp_path / "oof", facts)
    score, _, _ = rerun.grade_oof(Path(result.workdir) / "oof_submission.csv", tmp_path / "oof-grade")
    assert score == pytest.approx(blend.validation_score, rel=1e-6)


def test_a_member_over_a_row_subsample_leaves_the_blend_to_the_others(
    kaggle_dir: Path, tmp_path: Path
) -> None:
    """On a large task a capped family (catalog max_rows) predicts a subsample of the train rows: the blend
    takes the nodes over the best node's rows instead of giving up (it used to, whenever any member differed)."""
    task = load_task(kaggle_dir, "house-prices-advanced-regression-techniques")
    prepared = prepare_task(task, tmp_path / "cache")
    facts = json.loads((prepared.public_dir / "task.json").read_text())
    sandbox = Sandbox(isolation="none", timeout_s=60)
    ctx = search_context(prepared.public_dir, tmp_path / "work", sandbox, CompilerCoder(time_budget_s=5))
    runner = OofRunner(sandbox, prepared.public_dir, tmp_path / "oof", facts)
    train = pd.read_csv(prepared.public_dir / "train.csv")
    test = pd.read_csv(prepared.public_dir / "test.csv")
    truth = train["SalePrice"].to_numpy(dtype=float)
    rng = np.random.default_rng(0)
    state = SearchState()
    members = {  # node -> (family, the rows its out-of-fold file covers)
        "1-search": ("lightgbm", np.arange(len(train))),
        "2-search": ("linear", np.arange(len(train))),
        "3-search": ("knn", np.sort(rng.choice(len(train), len(train) // 2, replace=False))),
    }
    for step, (node_id, (family, rows)) in enumerate(members.items(), start=1):
        folder = tmp_path / node_id
        folder.mkdir()
        noisy = truth * np.exp(rng.normal(0, 0.12 + 0.01 * step, len(truth)))  # independent errors
        pd.DataFrame({"Id": train["Id"].iloc[rows], "SalePrice": noisy[rows]}).to_csv(
            folder / "oof_submission.csv", index=False
        )
        pd.DataFrame({"Id": test["Id"], "SalePrice": float(truth.mean())}).to_csv(
            folder / "submission.csv", index=False
        )
        score, _, _ = runner.grade_oof(folder / "oof_submission.csv", tmp_path / f"grade-{node_id}")
        node = ctx.journal.add("search")
        node.id, node.status, node.validation_score = node_id, "ok", score
        node.code, node.plan = "print('member')", {"models": [{"family": family}], "preprocessing": {}}
        state.nodes.append(node)
        state.outputs[node_id] = folder
    ranked = Search(policy="tree")._ranked(ctx.journal, state)
    assert ranked[0].id == "1-search"

    blend = Search(policy="tree", blend_method="weights")._blend(
        ctx, ctx.journal, state, runner, tmp_path / "b"
    )
    assert blend is not None and blend.status == "ok"
    assert set(blend.meta["blend"]["members"]) == {"1-search", "2-search"}  # not the subsample's node
    assert blend.validation_score == pytest.approx(blend.meta["blend"]["fitted_score"], abs=1e-9)
    assert blend.validation_score < ranked[0].validation_score  # rmse of log: two independent errors averaged
