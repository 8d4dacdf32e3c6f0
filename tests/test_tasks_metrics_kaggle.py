"""The further Kaggle metrics (issue 31) against references, graded through real submission files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import (
    cohen_kappa_score,
    f1_score,
    log_loss,
    mean_absolute_percentage_error,
    median_absolute_error,
    r2_score,
    roc_auc_score,
)

from src.errors import PipesynthError
from src.tasks.metrics import get_metric, metric_names
from src.tasks.rating import bootstrap_scores

RNG = np.random.default_rng(31)
N = 400


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("quadratic_weighted_kappa", True), ("map@3", True), ("map@5", True), ("median_absolute_error", False),
        ("log_loss", False), ("macro_f1", True), ("f1", True), ("spearman", True), ("mape", False),
        ("r2", True), ("normalized_gini", True),
    ],
)  # fmt: skip
def test_each_declares_its_direction(name: str, higher: bool) -> None:
    metric = get_metric(name)
    assert metric.higher_is_better is higher
    assert metric.better(1.0, 0.5) is higher
    assert name in metric_names() or name.startswith("map@")


def test_quadratic_weighted_kappa_is_sklearns_over_the_rating_range() -> None:
    t, p = RNG.integers(1, 7, N), RNG.integers(0, 6, N)
    qwk = get_metric("quadratic_weighted_kappa")
    expected = cohen_kappa_score(t, p, weights="quadratic", labels=list(range(0, 7)))
    assert qwk(t, p) == pytest.approx(expected, abs=1e-12)
    assert qwk(t, t) == pytest.approx(1.0) and qwk.ordinal
    # the distance counts: off by one is better than off by four
    assert qwk(t, np.clip(t + 1, 0, 6)) > qwk(t, np.clip(t - 4, 0, 6))
    # hand-computed: truth [0, 1, 2], prediction [0, 2, 2] -> 1 - (1/4) / (E term 2/3 * 1/4 ... ) = 0.8
    assert qwk([0, 1, 2], [0, 2, 2]) == pytest.approx(
        cohen_kappa_score([0, 1, 2], [0, 2, 2], weights="quadratic")
    )


def test_map_at_k_hand_computed() -> None:
    truth = ["a", "b", "c", "d"]
    ranked = np.array([["a", "x", "y"], ["x", "b", "y"], ["x", "y", "c"], ["x", "y", "z"]])
    assert get_metric("map@3")(truth, ranked) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    assert get_metric("map@1")(truth, ranked) == pytest.approx(1 / 4)  # only the first label counts
    assert get_metric("map@3").k == 3 and get_metric("map@3").prediction == "ranking"
    repeated = np.array([["x", "x", "a"]])  # a hit after a repeat still sits at rank 3
    assert get_metric("map@3")(["a"], repeated) == pytest.approx(1 / 3)


def test_value_metrics_match_sklearn_and_scipy() -> None:
    t, p = RNG.random(N) + 0.2, RNG.random(N)
    assert get_metric("median_absolute_error")(t, p) == pytest.approx(median_absolute_error(t, p))
    assert get_metric("mape")(t, p) == pytest.approx(mean_absolute_percentage_error(t, p))
    assert get_metric("r2")(t, p) == pytest.approx(r2_score(t, p))
    assert get_metric("spearman")(t, np.round(p, 1)) == pytest.approx(spearmanr(t, np.round(p, 1))[0])


def test_label_and_probability_metrics_match_sklearn() -> None:
    y, prob = RNG.integers(0, 2, N), RNG.random(N)
    assert get_metric("log_loss")(y, prob) == pytest.approx(log_loss(y, prob))
    a, b = RNG.integers(0, 4, N).astype(str), RNG.integers(0, 5, N).astype(str)
    assert get_metric("macro_f1")(a, b) == pytest.approx(f1_score(a, b, average="macro"))
    yes_no = np.where(RNG.random(N) > 0.4, "yes", "no")
    guess = np.where(RNG.random(N) > 0.5, "yes", "no")
    assert get_metric("f1")(yes_no, guess) == pytest.approx(f1_score(yes_no, guess, pos_label="yes"))
    keys = np.char.add("int:", y.astype(str))  # the grader's label keys: the positive class is still 1
    assert get_metric("f1")(keys, keys[::-1]) == pytest.approx(f1_score(y, y[::-1]))


def test_normalized_gini_is_twice_the_auc_minus_one_on_binary_targets() -> None:
    y, score = RNG.integers(0, 2, N).astype(float), RNG.random(N)
    assert get_metric("normalized_gini")(y, score) == pytest.approx(2 * roc_auc_score(y, score) - 1)
    # continuous targets (Allstate-style): the perfect ordering scores 1, the reversed one -1
    amount = RNG.random(N) * 100
    assert get_metric("normalized_gini")(amount, amount) == pytest.approx(1.0)
    assert get_metric("normalized_gini")(amount, -amount) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "name",
    ["quadratic_weighted_kappa", "map@3", "median_absolute_error", "log_loss", "macro_f1", "f1", "spearman",
     "mape", "r2", "normalized_gini"],
)  # fmt: skip
def test_bootstrap_intervals_hold_the_point_score(name: str) -> None:
    metric = get_metric(name)
    n = 300
    t, p = {
        "quadratic_weighted_kappa": (RNG.integers(0, 4, n), np.clip(RNG.integers(0, 4, n), 0, 3)),
        "map@3": (
            RNG.integers(0, 4, n).astype(str),
            np.stack([RNG.permutation(list("0123"))[:3] for _ in range(n)]),
        ),
        "log_loss": (RNG.integers(0, 2, n), RNG.random(n)),
        "macro_f1": (RNG.integers(0, 3, n).astype(str), RNG.integers(0, 3, n).astype(str)),
        "f1": (RNG.integers(0, 2, n).astype(str), RNG.integers(0, 2, n).astype(str)),
    }.get(name, (RNG.random(n) + 0.5, RNG.random(n) + 0.5))
    samples = bootstrap_scores(metric, np.asarray(t), np.asarray(p), n_resamples=300, seed=0)
    assert len(samples) == 300 and np.isfinite(samples).all() and samples.std() > 0
    low, high = np.quantile(samples, [0.025, 0.975])
    assert low <= metric(t, p) <= high


def test_map_at_k_name_errors() -> None:
    with pytest.raises(PipesynthError, match="unknown metric 'map@0'"):
        get_metric("map@0")


# --------------------------------------------------------------------------- graded through submissions


def _task(root: Path, slug: str, metric: str, target: np.ndarray, task_type: str, higher: bool) -> Path:
    folder = root / slug
    (folder / "raw").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(len(target)), "x": rng.random(len(target)), "y": target})
    frame.to_csv(folder / "raw" / "train.csv", index=False)
    facts = {"slug": slug, "title": slug, "data_type": "tabular", "task_type": task_type, "id_column": "id",
             "targets": ["y"], "metric": metric, "higher_is_better": higher}  # fmt: skip
    (folder / "task.json").write_text(json.dumps(facts))
    (folder / "description.md").write_text(f"Predict y; graded by {metric}.")
    return folder


def _prepared(tmp_path: Path, metric: str, target: np.ndarray, task_type: str, higher: bool):
    from src.tasks.prepare import prepare_task
    from src.tasks.registry import load_task

    _task(tmp_path / "data", "t", metric, target, task_type, higher)
    return prepare_task(load_task(tmp_path / "data", "t", overrides_dir=None), tmp_path / "cache", seed=0)


def _submit(path: Path, ids: pd.Series, values: list) -> Path:
    pd.DataFrame({"id": ids, "y": values}).to_csv(path, index=False)
    return path


def test_qwk_submission_grades_whole_numbers_and_refuses_fractions(tmp_path: Path) -> None:
    from src.tasks.grading import grade

    prepared = _prepared(
        tmp_path, "quadratic_weighted_kappa", np.tile([1, 2, 3, 4, 5], 40), "multiclass_classification", True
    )
    answers = pd.read_csv(prepared.answers_path)
    perfect = grade(prepared, _submit(tmp_path / "a.csv", answers["id"], answers["y"].tolist()))
    assert perfect.valid and perfect.score == pytest.approx(1.0)
    off = grade(prepared, _submit(tmp_path / "b.csv", answers["id"], (answers["y"] + 1).clip(1, 5).tolist()))
    assert off.valid and 0 < off.score < 1
    fractional = grade(prepared, _submit(tmp_path / "c.csv", answers["id"], (answers["y"] + 0.5).tolist()))
    assert not fractional.valid and fractional.score is None and "whole-number" in fractional.reason


def test_map_at_3_submission_is_space_separated_labels(tmp_path: Path) -> None:
    from src.tasks.grading import grade

    prepared = _prepared(
        tmp_path, "map@3", np.tile(["cat", "dog", "eel", "fox"], 50), "multiclass_classification", True
    )
    answers = pd.read_csv(prepared.answers_path)
    second = [
        f"{'dog' if label != 'dog' else 'cat'} {label}"  # the truth always second: AP = 1/2
        for label in answers["y"]
    ]
    graded = grade(prepared, _submit(tmp_path / "a.csv", answers["id"], second))
    assert graded.valid and graded.score == pytest.approx(0.5)
    unknown = grade(prepared, _submit(tmp_path / "b.csv", answers["id"], ["owl cat"] * len(answers)))
    assert not unknown.valid and unknown.score is None and "'owl'" in unknown.reason
    empty = grade(prepared, _submit(tmp_path / "c.csv", answers["id"], [" "] * len(answers)))
    assert not empty.valid and "empty row" in empty.reason


def test_binary_log_loss_refuses_probabilities_outside_the_unit_interval(tmp_path: Path) -> None:
    from src.tasks.grading import grade

    prepared = _prepared(tmp_path, "log_loss", np.tile([0, 1], 100), "binary_classification", False)
    answers = pd.read_csv(prepared.answers_path)
    good = grade(prepared, _submit(tmp_path / "a.csv", answers["id"], [0.5] * len(answers)))
    assert good.valid and good.score == pytest.approx(np.log(2))
    bad = grade(prepared, _submit(tmp_path / "b.csv", answers["id"], [1.5] * len(answers)))
    assert not bad.valid and bad.score is None and "[0, 1]" in bad.reason
