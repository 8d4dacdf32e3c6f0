"""Every metric against an independent reference (sklearn, scipy or the Kaggle formula written out)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, rankdata
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    root_mean_squared_error,
    root_mean_squared_log_error,
)

from src.errors import PipesynthError
from src.tasks.metrics import (
    DEFAULT_CATEGORIES_PATH,
    categories_for_metric,
    category_map,
    get_metric,
    metric_for_category,
    metric_names,
)

RNG = np.random.default_rng(7)
N = 200


def _auc_by_ranks(y: np.ndarray, s: np.ndarray) -> float:
    # Mann-Whitney U: the probability that a random positive outranks a random negative (ties count half)
    ranks = rankdata(s)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_registry_holds_every_metric_of_the_issue() -> None:
    expected = {
        "accuracy", "roc_auc", "mean_column_roc_auc", "rmse", "rmse_log", "rmsle", "mean_column_rmsle", "mae",
        "micro_f1", "multiclass_log_loss", "mcrmse", "smape", "pearson",
    }  # fmt: skip
    assert expected <= set(metric_names())


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("accuracy", True), ("roc_auc", True), ("mean_column_roc_auc", True), ("micro_f1", True),
        ("pearson", True), ("rmse", False), ("rmse_log", False), ("rmsle", False), ("mean_column_rmsle", False),
        ("mae", False), ("multiclass_log_loss", False), ("mcrmse", False), ("smape", False),
    ],
)  # fmt: skip
def test_direction_is_declared_and_better_follows_it(name: str, higher: bool) -> None:
    metric = get_metric(name)
    assert metric.higher_is_better is higher
    assert metric.better(0.9, 0.1) is higher
    assert metric.better(0.1, 0.9) is (not higher)
    assert metric.better(0.5, 0.5) is False


def test_unknown_metric_is_one_clear_error() -> None:
    with pytest.raises(PipesynthError, match="unknown metric 'f2'.*accuracy"):
        get_metric("f2")


def test_accuracy_and_micro_f1() -> None:
    y = RNG.choice(["a", "b", "c"], N)
    p = np.where(RNG.random(N) < 0.7, y, RNG.choice(["a", "b", "c"], N))
    assert get_metric("accuracy")(y, p) == pytest.approx(accuracy_score(y, p))
    assert get_metric("accuracy")(y, p) == pytest.approx(np.mean(y == p))
    assert get_metric("micro_f1")(y, p) == pytest.approx(f1_score(y, p, average="micro"))


def test_roc_auc_matches_the_rank_formula() -> None:
    y = RNG.integers(0, 2, N)
    s = np.round(RNG.random(N) * 0.5 + y * 0.3, 2)  # rounded: ties occur and count half
    assert get_metric("roc_auc")(y, s) == pytest.approx(_auc_by_ranks(y, s))


def test_mean_column_roc_auc() -> None:
    y = RNG.integers(0, 2, (N, 2))
    s = RNG.random((N, 2)) + 0.4 * y
    expected = np.mean([_auc_by_ranks(y[:, j], s[:, j]) for j in range(2)])
    assert get_metric("mean_column_roc_auc")(y, s) == pytest.approx(expected)


def test_regression_errors() -> None:
    y = RNG.random(N) * 100 + 1
    p = y * (1 + RNG.normal(0, 0.2, N)).clip(0.1)
    assert get_metric("rmse")(y, p) == pytest.approx(root_mean_squared_error(y, p))
    assert get_metric("mae")(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert get_metric("rmsle")(y, p) == pytest.approx(root_mean_squared_log_error(y, p))
    assert get_metric("rmse_log")(y, p) == pytest.approx(root_mean_squared_error(np.log(y), np.log(p)))
    # rmse_log is not rmsle: log(y) against log(1 + y)
    assert get_metric("rmse_log")(y, p) != pytest.approx(get_metric("rmsle")(y, p))


def test_column_wise_errors() -> None:
    y = RNG.random((N, 2)) * 10
    p = y + RNG.normal(0, [0.5, 2.0], (N, 2)).clip(-y + 0.01)
    expected = np.mean([root_mean_squared_log_error(y[:, j], p[:, j]) for j in range(2)])
    assert get_metric("mean_column_rmsle")(y, p) == pytest.approx(expected)
    mcrmse = root_mean_squared_error(y, p, multioutput="raw_values").mean()
    assert get_metric("mcrmse")(y, p) == pytest.approx(mcrmse)
    assert get_metric("mcrmse")(y, p) != pytest.approx(get_metric("rmse")(y, p))


def test_multiclass_log_loss_is_kaggles() -> None:
    k = 3
    y = RNG.integers(0, k, N)
    onehot = np.eye(k)[y]
    p = RNG.dirichlet(np.ones(k), N)
    metric = get_metric("multiclass_log_loss")
    assert metric(onehot, p) == pytest.approx(log_loss(y, p, labels=list(range(k))))
    assert metric(y, p) == pytest.approx(metric(onehot, p))  # class indices or one-hot
    # rows are rescaled to sum to one before scoring
    assert metric(onehot, p * RNG.uniform(0.2, 5, (N, 1))) == pytest.approx(metric(onehot, p))
    # a zero probability on the true class costs -log(1e-15), not infinity
    hard = np.array([[0.0, 1.0, 0.0]])
    assert metric(np.array([[1.0, 0.0, 0.0]]), hard) == pytest.approx(-np.log(1e-15))
    assert metric(np.array([[0.0, 1.0, 0.0]]), hard) == pytest.approx(-np.log(1 - 1e-15))


def test_smape_written_out() -> None:
    y = np.array([100.0, 50.0, 0.0, 10.0])
    p = np.array([110.0, 40.0, 0.0, 0.0])
    terms = [10 / 105, 10 / 45, 0.0, 10 / 5]  # |F - A| / ((|A| + |F|) / 2); 0/0 counts as 0
    assert get_metric("smape")(y, p) == pytest.approx(100 * np.mean(terms))


def test_pearson() -> None:
    y = RNG.random(N)
    p = y + RNG.normal(0, 0.3, N)
    assert get_metric("pearson")(y, p) == pytest.approx(pearsonr(y, p).statistic)
    assert get_metric("pearson")(y, np.full(N, 3.0)) == 0.0  # constant prediction: no linear signal


def test_perfect_scores() -> None:
    assert get_metric("accuracy").is_perfect(1.0) and not get_metric("accuracy").is_perfect(0.99)
    assert get_metric("rmse").is_perfect(0.0)
    y = RNG.random(20) + 1
    for name in ("rmse", "rmse_log", "rmsle", "mae", "smape"):
        assert get_metric(name).is_perfect(get_metric(name)(y, y)), name


def test_corpus_categories_map_onto_registered_metrics(corpus_csv: Path) -> None:
    if not DEFAULT_CATEGORIES_PATH.is_file():
        pytest.skip(f"{DEFAULT_CATEGORIES_PATH} not written yet")
    mapping = category_map()
    prompts = pd.read_csv(corpus_csv, usecols=["prompt"])["prompt"]
    seen = {m.group(1) for p in prompts for m in [re.search(r"The metric type is (\w+)", p)] if m}
    assert seen and seen <= set(mapping), f"categories without an entry: {seen - set(mapping)}"
    for category, entry in mapping.items():
        for name in [entry.task_metric, *entry.other_task_metrics]:
            if name is None:
                continue
            # a category and the metric it maps to must agree on the direction
            assert get_metric(name).higher_is_better is (entry.direction == "maximize"), (category, name)
    assert metric_for_category("auc").name == "roc_auc"
    assert categories_for_metric("rmse_log") == ["percentage_errors"]
    with pytest.raises(PipesynthError, match="unknown metric category"):
        metric_for_category("no_such_category")


def test_every_dev_task_metric_has_a_corpus_category(kaggle_dir: Path) -> None:
    if not DEFAULT_CATEGORIES_PATH.is_file():
        pytest.skip(f"{DEFAULT_CATEGORIES_PATH} not written yet")
    import json

    metrics = {json.loads(p.read_text())["metric"] for p in kaggle_dir.glob("*/task.json")}
    for name in metrics:
        assert categories_for_metric(name), f"{name}: no corpus category to prompt with"


def _bootstrap_cases(rng: np.random.Generator, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    labels = lambda: rng.integers(0, 3, n).astype(str)  # noqa: E731
    sparse = lambda: rng.random(n) * (rng.random(n) > 0.1)  # noqa: E731 - zeros exercise SMAPE's 0/0 rule
    return {
        "accuracy": (labels(), labels()),
        "micro_f1": (labels(), labels()),
        "roc_auc": (rng.integers(0, 2, n).astype(float), np.round(rng.random(n), 1)),  # rounded: tied scores
        "mean_column_roc_auc": (rng.integers(0, 2, (n, 3)).astype(float), np.round(rng.random((n, 3)), 2)),
        "multiclass_log_loss": (np.eye(3)[rng.integers(0, 3, n)], rng.random((n, 3))),
        "rmse": (rng.random(n), rng.random(n)),
        "rmse_log": (rng.random(n) + 0.1, rng.random(n) + 0.1),
        "rmsle": (rng.random(n), rng.random(n)),
        "mean_column_rmsle": (rng.random((n, 2)), rng.random((n, 2))),
        "mae": (rng.random(n), rng.random(n)),
        "mcrmse": (rng.random((n, 2)), rng.random((n, 2))),
        "smape": (sparse(), sparse()),
        "pearson": (rng.random(n), rng.random(n)),
        "quadratic_weighted_kappa": (
            rng.integers(0, 5, n).astype(float),
            rng.integers(1, 5, n).astype(float),
        ),
        "median_absolute_error": (rng.random(n), rng.random(n)),
        "log_loss": (rng.integers(0, 2, n).astype(float), rng.random(n)),
        "macro_f1": (labels(), rng.integers(0, 4, n).astype(str)),  # a predicted label never true
        "f1": (rng.integers(0, 2, n).astype(str), rng.integers(0, 2, n).astype(str)),
        "spearman": (rng.random(n), np.round(rng.random(n), 1)),
        "mape": (rng.random(n) + 0.5, rng.random(n)),
        "r2": (rng.random(n), rng.random(n)),
        "normalized_gini": (rng.integers(0, 2, n).astype(float), rng.random(n)),
        "map@k": (labels(), np.stack([rng.permutation(["0", "1", "2", "3"])[:3] for _ in range(n)])),
    }


def test_vectorised_bootstrap_equals_scoring_each_resample() -> None:
    from src.tasks.rating import bootstrap_counts

    rng = np.random.default_rng(0)
    n = 300
    cases = _bootstrap_cases(rng, n)
    assert set(cases) == set(metric_names())  # every metric is covered
    counts = bootstrap_counts(n, 25, seed=1)
    assert (counts.sum(axis=1) == n).all()
    slow = {"median_absolute_error", "spearman", "normalized_gini"}  # order statistics: scored one by one
    for name, (t, p) in cases.items():
        metric = get_metric(name.replace("@k", "@3"))
        assert (metric.resampled is None) == (name in slow), name
        one_by_one = [metric(t[np.repeat(np.arange(n), c)], p[np.repeat(np.arange(n), c)]) for c in counts]
        np.testing.assert_allclose(metric.bootstrap(t, p, counts), one_by_one, rtol=1e-9, atol=1e-12)
