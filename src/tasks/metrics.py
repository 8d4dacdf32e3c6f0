"""Metrics registry: every metric declares its direction, what a prediction is, and its perfect score.

    from src.tasks.metrics import get_metric
    rmse = get_metric("rmse")
    rmse([1, 2], [1, 3])          # 0.7071...
    rmse.better(0.5, 0.7)         # True: lower is better, declared, never inferred from data

A metric takes `y_true` and `y_pred` as arrays of shape (n,) or (n, k) (one column per target or class) and
returns a float. Validation of a submission (columns, NaN, ranges) is the grader's job; metrics assume clean,
aligned input. The corpus's metric categories (e.g. "auc", "mse") map onto these names through
`conf/metric_categories/code4ml.yaml` (`task_metric` per category), read by `metric_for_category`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from omegaconf import OmegaConf
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from src.config import REPO_ROOT
from src.errors import PipesynthError

PredictionKind = Literal["label", "probability", "value", "ranking"]
Domain = Literal["any", "non_negative", "positive"]

DEFAULT_CATEGORIES_PATH = REPO_ROOT / "conf" / "metric_categories" / "code4ml.yaml"
LOG_LOSS_EPS = 1e-15  # Kaggle's clipping for multi-class log loss


@dataclass(frozen=True)
class Metric:
    """A scoring function with a declared direction.

    prediction: "label" (a class label per row), "probability" (scores in [0, 1]), "value" (a number) or
        "ranking" (up to `k` class labels per row, best first, space-separated in one column: MAP@k).
    domain: which predicted values the metric is defined for ("positive" for a log, "non_negative" for log1p).
    perfect: the best attainable score, used to spot leaked leaderboards (None where there is no such bound).
    """

    name: str
    higher_is_better: bool
    prediction: PredictionKind
    fn: Callable[[np.ndarray, np.ndarray], float]
    perfect: float | None = None
    domain: Domain = "any"
    description: str = ""
    # True: the submission holds one probability column per class of a single label target (log loss)
    per_class: bool = False
    # bootstrap in one pass: (y_true, y_pred, counts (B, n) of each row in each resample) -> (B,) scores;
    # None: the resamples are scored one at a time through fn
    resampled: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    # True: labels are ordered whole numbers (ratings), graded as numbers (quadratic weighted kappa)
    ordinal: bool = False
    k: int | None = None  # labels per row of a "ranking" prediction
    source: str | None = None  # a user metric: the `module:function` it calls

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        return float(self.fn(np.asarray(y_true), np.asarray(y_pred)))

    def bootstrap(self, y_true: Any, y_pred: Any, counts: np.ndarray) -> np.ndarray:
        """Scores of resamples given as row counts (B, n): row i appears counts[b, i] times in resample b."""
        t, p = np.asarray(y_true), np.asarray(y_pred)
        if self.resampled is not None:
            return np.asarray(self.resampled(t, p, counts), dtype=float)
        scores = np.empty(len(counts))
        for b, row_counts in enumerate(counts):
            rows = np.repeat(np.arange(len(row_counts)), row_counts)
            scores[b] = self(t[rows], p[rows])
        return scores

    def better(self, a: float, b: float) -> bool:
        """True when score `a` is strictly better than score `b` under this metric's direction."""
        return bool(a > b) if self.higher_is_better else bool(a < b)

    def is_perfect(self, score: float, tol: float = 1e-9) -> bool:
        """True when `score` equals the best attainable value (a leaked-label signal on a leaderboard)."""
        return self.perfect is not None and math.isclose(float(score), self.perfect, abs_tol=tol)


# --------------------------------------------------------------------------- metric functions


def _as_2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return accuracy_score(y_true.ravel(), y_pred.ravel())


def _micro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # single-label multi-class: micro-averaged F1 over all classes (equals accuracy; kept as Kaggle names it)
    return f1_score(y_true.ravel().astype(str), y_pred.ravel().astype(str), average="micro")


def _roc_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return roc_auc_score(_float(y_true).ravel(), _float(y_pred).ravel())


def _mean_column_roc_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _as_2d(_float(y_true)), _as_2d(_float(y_pred))
    return float(np.mean([roc_auc_score(t[:, j], p[:, j]) for j in range(t.shape[1])]))


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((_float(y_true) - _float(y_pred)) ** 2)))


def _rmse_log(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # House Prices: RMSE between the logarithms of the observed and predicted values
    return _rmse(np.log(_float(y_true)), np.log(_float(y_pred)))


def _rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rmse(np.log1p(_float(y_true)), np.log1p(_float(y_pred)))


def _mean_column_rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _as_2d(_float(y_true)), _as_2d(_float(y_pred))
    return float(np.mean([_rmsle(t[:, j], p[:, j]) for j in range(t.shape[1])]))


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(_float(y_true) - _float(y_pred))))


def _mcrmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # mean column-wise RMSE (CommonLit): RMSE per target column, then the mean over columns
    t, p = _as_2d(_float(y_true)), _as_2d(_float(y_pred))
    return float(np.mean(np.sqrt(np.mean((t - p) ** 2, axis=0))))


def _smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # Kaggle's SMAPE in percent; a row where both actual and forecast are 0 counts as 0 error
    t, p = _float(y_true).ravel(), _float(y_pred).ravel()
    denom = (np.abs(t) + np.abs(p)) / 2.0
    ratio = np.divide(np.abs(p - t), denom, out=np.zeros_like(denom), where=denom != 0)
    return float(100.0 * np.mean(ratio))


def _pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _float(y_true).ravel(), _float(y_pred).ravel()
    if np.std(t) == 0 or np.std(p) == 0:
        return 0.0  # undefined for a constant vector; a constant prediction carries no linear signal
    return float(np.corrcoef(t, p)[0, 1])


def _multiclass_log_loss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kaggle's multi-class log loss: rows rescaled to sum to 1, then clipped to [1e-15, 1 - 1e-15].

    y_true: one-hot (n, k) or class indices (n,); y_pred: (n, k) non-negative scores per class.
    """
    p = _as_2d(_float(y_pred))
    t = _float(y_true)
    if t.ndim == 1:
        t = np.eye(p.shape[1])[t.astype(int)]
    p = p / p.sum(axis=1, keepdims=True)
    p = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(np.sum(t * np.log(p), axis=1)))


# --------------------------------------------------------------------------- vectorised resampling
# A resample is a row-count vector w (sum n); most metrics are a function of per-row terms averaged with w, so
# B resamples cost one (B, n) @ (n, k) product instead of B metric calls.


def _weighted_means(terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B, k): the count-weighted mean of each term column in each resample."""
    return (counts @ _as_2d(terms)) / counts.sum(axis=1, keepdims=True)


def _mean_of(
    term_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], finish: Callable[[np.ndarray], np.ndarray]
):
    def resampled(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return finish(_weighted_means(term_fn(y_true, y_pred), counts))

    return resampled


def _equal_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (_as_2d(t).astype(str) == _as_2d(p).astype(str)).mean(axis=1)


def _sq_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (_as_2d(_float(t)) - _as_2d(_float(p))) ** 2


def _log_sq_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _sq_terms(np.log(_float(t)), np.log(_float(p)))


def _log1p_sq_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _sq_terms(np.log1p(_float(t)), np.log1p(_float(p)))


def _abs_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(_as_2d(_float(t)) - _as_2d(_float(p)))


def _smape_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    t, p = _float(t).ravel(), _float(p).ravel()
    denom = (np.abs(t) + np.abs(p)) / 2.0
    return 100.0 * np.divide(np.abs(p - t), denom, out=np.zeros_like(denom), where=denom != 0)


def _log_loss_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = _as_2d(_float(p))
    t = _float(t)
    if t.ndim == 1:
        t = np.eye(p.shape[1])[t.astype(int)]
    p = np.clip(p / p.sum(axis=1, keepdims=True), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return -np.sum(t * np.log(p), axis=1)


def _pearson_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    t, p = _float(t).ravel(), _float(p).ravel()
    t, p = t - t.mean(), p - p.mean()  # centred first: the moments below then lose no precision
    return np.column_stack([t, p, t * t, p * p, t * p])


def _pearson_finish(m: np.ndarray) -> np.ndarray:
    var_t, var_p = m[:, 2] - m[:, 0] ** 2, m[:, 3] - m[:, 1] ** 2
    cov = m[:, 4] - m[:, 0] * m[:, 1]
    ok = (var_t > 1e-300) & (var_p > 1e-300)
    return np.where(ok, cov / np.sqrt(np.where(ok, var_t * var_p, 1.0)), 0.0)


def _auc_resampled(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of every resample at once: Mann-Whitney over tied-score groups, weighted by row counts."""
    t, p = _float(y_true).ravel(), _float(y_pred).ravel()
    order = np.argsort(p, kind="mergesort")
    _, starts = np.unique(p[order], return_index=True)
    positive = t[order] == t.max()  # as roc_auc_score: the greater of the two labels is the positive class
    w = counts[:, order].astype(float)
    pos = np.add.reduceat(w * positive, starts, axis=1)  # (B, groups), scores ascending
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives with a strictly lower score
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def _column_auc_resampled(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    t, p = _as_2d(_float(y_true)), _as_2d(_float(y_pred))
    return np.mean([_auc_resampled(t[:, j], p[:, j], counts) for j in range(t.shape[1])], axis=0)


def _sqrt_mean(m: np.ndarray) -> np.ndarray:
    return np.sqrt(m.mean(axis=1))


def _mean_sqrt(m: np.ndarray) -> np.ndarray:
    return np.sqrt(m).mean(axis=1)


def _first(m: np.ndarray) -> np.ndarray:
    return m.mean(axis=1)


# --------------------------------------------------------------------------- further Kaggle metrics
# Label metrics below score label *keys* or plain labels alike: the grader passes "int:1"-style keys (so that
# "1" and "1.0" are one label), tests and scripts pass values.

POSITIVE_NAMES = ("1", "1.0", "true", "yes", "y", "positive", "pos")


def _positive_label(labels: np.ndarray) -> Any:
    """Binary F1's positive class: the label reading as 1 / true / yes, else the greatest label (sorted)."""
    values = sorted({str(v) for v in labels.ravel()})
    for value in values:
        if value.split(":", 1)[-1].strip().lower() in POSITIVE_NAMES:
            return value
    return values[-1]


def _pair_codes(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class indices of true and predicted labels over their sorted union (labels compared as text)."""
    t, p = np.asarray(t).ravel().astype(str), np.asarray(p).ravel().astype(str)
    classes = sorted(set(t) | set(p))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in t]), np.array([index[v] for v in p]), classes


def _confusions(t_codes: np.ndarray, p_codes: np.ndarray, n_classes: int, counts: np.ndarray) -> np.ndarray:
    """(B, C, C) confusion matrices (true x predicted) of each resample, from per-row counts (B, n)."""
    onehot = np.zeros((len(t_codes), n_classes * n_classes))
    onehot[np.arange(len(t_codes)), t_codes * n_classes + p_codes] = 1.0
    return (counts @ onehot).reshape(len(counts), n_classes, n_classes)


def _f1_from_confusions(conf: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(B, len(columns)) F1 of the given classes; a class never true nor predicted scores 0 (sklearn's rule)."""
    tp = conf[:, columns, columns]
    predicted, actual = conf.sum(axis=1)[:, columns], conf.sum(axis=2)[:, columns]
    denom = predicted + actual
    return np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def _f1_resampled(t: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    t_codes, p_codes, classes = _pair_codes(t, p)
    positive = classes.index(_positive_label(np.asarray(classes)))
    conf = _confusions(t_codes, p_codes, len(classes), counts)
    return _f1_from_confusions(conf, np.array([positive]))[:, 0]


def _macro_f1_resampled(t: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # sklearn's macro average runs over the labels present in truth or prediction of the scored rows
    t_codes, p_codes, classes = _pair_codes(t, p)
    conf = _confusions(t_codes, p_codes, len(classes), counts)
    f1 = _f1_from_confusions(conf, np.arange(len(classes)))
    present = (conf.sum(axis=1) + conf.sum(axis=2)) > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _once(resampled: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]):
    """The metric on the rows as given: one resample holding every row once."""

    def fn(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(resampled(y_true, y_pred, np.ones((1, len(np.asarray(y_true).ravel()))))[0])

    return fn


def _ratings(a: np.ndarray) -> np.ndarray:
    values = _float(np.asarray(a)).ravel()
    return np.rint(values).astype(np.int64)


def _qwk_resampled(t: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa (Kaggle's): ratings from min to max of truth and prediction; 1 - sum(W*O)/sum(W*E)."""
    t, p = _ratings(t), _ratings(p)
    low, high = int(min(t.min(), p.min())), int(max(t.max(), p.max()))
    n_ratings = high - low + 1
    if n_ratings == 1:
        return np.ones(len(counts))  # one rating everywhere: perfect agreement
    observed = _confusions(t - low, p - low, n_ratings, counts)
    total = observed.sum(axis=(1, 2))
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :] / total[:, None, None]
    grid = np.arange(n_ratings)
    weights = (grid[:, None] - grid[None, :]) ** 2 / (n_ratings - 1) ** 2
    num, den = (weights * observed).sum(axis=(1, 2)), (weights * expected).sum(axis=(1, 2))
    return np.where(den > 0, 1.0 - num / np.where(den > 0, den, 1.0), 1.0)


def _map_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Average precision at k of each row with one true label: 1 / (rank of its first hit), 0 without one."""
    truth = np.asarray(t).ravel().astype(str)
    ranked = np.asarray(p).astype(str)
    ranked = ranked.reshape(len(truth), -1)
    hits = ranked == truth[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    return np.divide(1.0, first, out=np.zeros(len(truth)), where=first > 0)


def _median_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.median(np.abs(_float(y_true).ravel() - _float(y_pred).ravel())))


def _binary_log_loss_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    t, p = _float(t).ravel(), np.clip(_float(p).ravel(), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))


def _spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # Pearson correlation of the average ranks (ties share their mean rank), as scipy.stats.spearmanr
    return _pearson(rankdata(_float(y_true).ravel()), rankdata(_float(y_pred).ravel()))


def _mape_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    # scikit-learn's mean_absolute_percentage_error: a fraction, |y| floored at machine epsilon
    t, p = _float(t).ravel(), _float(p).ravel()
    return np.abs(p - t) / np.maximum(np.abs(t), np.finfo(np.float64).eps)


def _r2_terms(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    t, p = _float(t).ravel(), _float(p).ravel()
    shift = t.mean()  # centred: the moments lose no precision
    return np.column_stack([(t - p) ** 2, t - shift, (t - shift) ** 2])


def _r2_finish(m: np.ndarray) -> np.ndarray:
    variance = m[:, 2] - m[:, 1] ** 2
    return np.where(variance > 0, 1.0 - m[:, 0] / np.where(variance > 0, variance, 1.0), np.nan)


def _gini(actual: np.ndarray, pred: np.ndarray) -> float:
    # Kaggle's reference (Porto Seguro, Allstate): sort by prediction descending, ties in the given row order
    order = np.lexsort((np.arange(len(pred)), -pred))
    ranked = actual[order]
    total = ranked.sum()
    if total == 0:
        return 0.0
    return float((np.cumsum(ranked).sum() / total - (len(actual) + 1) / 2.0) / len(actual))


def _normalized_gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _float(y_true).ravel(), _float(y_pred).ravel()
    best = _gini(t, t)
    return _gini(t, p) / best if best != 0 else 0.0


def _map_at(k: int) -> Metric:
    def fn(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(
            np.mean(_map_terms(y_true, np.asarray(y_pred).reshape(len(np.ravel(y_true)), -1)[:, :k]))
        )

    def resampled(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
        ranked = np.asarray(y_pred).reshape(len(np.ravel(y_true)), -1)[:, :k]
        return _weighted_means(_map_terms(y_true, ranked), counts)[:, 0]

    return Metric(
        f"map@{k}",
        True,
        "ranking",
        fn,
        perfect=1.0,
        description=f"mean average precision at {k}: up to {k} labels per row, space-separated, best first",
        resampled=resampled,
        k=k,
    )


MAP_PATTERN = re.compile(r"map@([1-9]\d*)")


_METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "accuracy",
            True,
            "label",
            _accuracy,
            perfect=1.0,
            description="fraction of exact labels",
            resampled=_mean_of(_equal_terms, _first),
        ),
        Metric(
            "micro_f1",
            True,
            "label",
            _micro_f1,
            perfect=1.0,
            description="micro-averaged F1 of labels",
            resampled=_mean_of(_equal_terms, _first),
        ),
        Metric(
            "roc_auc",
            True,
            "probability",
            _roc_auc,
            perfect=1.0,
            description="area under the ROC curve",
            resampled=_auc_resampled,
        ),
        Metric(
            "mean_column_roc_auc",
            True,
            "probability",
            _mean_column_roc_auc,
            perfect=1.0,
            description="ROC AUC per target column, averaged",
            resampled=_column_auc_resampled,
        ),
        Metric(
            "multiclass_log_loss",
            False,
            "probability",
            _multiclass_log_loss,
            perfect=0.0,
            description="cross-entropy of class probabilities (rows rescaled, clipped at 1e-15)",
            per_class=True,
            resampled=_mean_of(_log_loss_terms, _first),
        ),
        Metric(
            "rmse",
            False,
            "value",
            _rmse,
            perfect=0.0,
            description="root mean squared error",
            resampled=_mean_of(_sq_terms, _sqrt_mean),
        ),
        Metric(
            "rmse_log",
            False,
            "value",
            _rmse_log,
            perfect=0.0,
            domain="positive",
            description="RMSE of log(y) against log(prediction)",
            resampled=_mean_of(_log_sq_terms, _sqrt_mean),
        ),
        Metric(
            "rmsle",
            False,
            "value",
            _rmsle,
            perfect=0.0,
            domain="non_negative",
            description="root mean squared logarithmic error, log(1 + y)",
            resampled=_mean_of(_log1p_sq_terms, _sqrt_mean),
        ),
        Metric(
            "mean_column_rmsle",
            False,
            "value",
            _mean_column_rmsle,
            perfect=0.0,
            domain="non_negative",
            description="RMSLE per target column, averaged",
            resampled=_mean_of(_log1p_sq_terms, _mean_sqrt),
        ),
        Metric(
            "mae",
            False,
            "value",
            _mae,
            perfect=0.0,
            description="mean absolute error",
            resampled=_mean_of(_abs_terms, _first),
        ),
        Metric(
            "mcrmse",
            False,
            "value",
            _mcrmse,
            perfect=0.0,
            description="mean column-wise RMSE",
            resampled=_mean_of(_sq_terms, _mean_sqrt),
        ),
        Metric(
            "smape",
            False,
            "value",
            _smape,
            perfect=0.0,
            description="symmetric MAPE in percent",
            resampled=_mean_of(_smape_terms, _first),
        ),
        Metric(
            "pearson",
            True,
            "value",
            _pearson,
            perfect=1.0,
            description="Pearson correlation",
            resampled=_mean_of(_pearson_terms, _pearson_finish),
        ),
        Metric(
            "quadratic_weighted_kappa",
            True,
            "label",
            _once(_qwk_resampled),
            perfect=1.0,
            description="Cohen's kappa with quadratic weights over whole-number ratings (ordinal targets)",
            resampled=_qwk_resampled,
            ordinal=True,
        ),
        Metric(
            "median_absolute_error",
            False,
            "value",
            _median_absolute_error,
            perfect=0.0,
            description="median of the absolute errors",
        ),
        Metric(
            "log_loss",
            False,
            "probability",
            _once(_mean_of(_binary_log_loss_terms, _first)),
            perfect=0.0,
            description="binary cross-entropy of the positive class's probability (clipped at 1e-15)",
            resampled=_mean_of(_binary_log_loss_terms, _first),
        ),
        Metric(
            "macro_f1",
            True,
            "label",
            _once(_macro_f1_resampled),
            perfect=1.0,
            description="F1 per class, averaged with equal weight",
            resampled=_macro_f1_resampled,
        ),
        Metric(
            "f1",
            True,
            "label",
            _once(_f1_resampled),
            perfect=1.0,
            description="binary F1 of the positive class (the label reading 1 / true / yes, else the greatest)",
            resampled=_f1_resampled,
        ),
        Metric(
            "spearman",
            True,
            "value",
            _spearman,
            perfect=1.0,
            description="Spearman rank correlation",
        ),
        Metric(
            "mape",
            False,
            "value",
            _once(_mean_of(_mape_terms, _first)),
            perfect=0.0,
            description="mean absolute percentage error, a fraction (scikit-learn's)",
            resampled=_mean_of(_mape_terms, _first),
        ),
        Metric(
            "r2",
            True,
            "value",
            _once(_mean_of(_r2_terms, _r2_finish)),
            perfect=1.0,
            description="coefficient of determination",
            resampled=_mean_of(_r2_terms, _r2_finish),
        ),
        Metric(
            "normalized_gini",
            True,
            "value",
            _normalized_gini,
            perfect=1.0,
            description="Gini of the prediction's ordering over the Gini of the perfect ordering (Kaggle's)",
        ),
    ]
}


def metric_names() -> list[str]:
    """Names of the built-in metrics, sorted (`map@k` stands for MAP at any k, e.g. map@3)."""
    return sorted([*(n for n, m in _METRICS.items() if m.source is None), "map@k"])


def get_metric(name: str) -> Metric:
    """The metric called `name`: a built-in one, `map@<k>`, or a user metric registered by its task.

    A PipesynthError names the known ones otherwise.
    """
    if name in _METRICS:
        return _METRICS[name]
    found = MAP_PATTERN.fullmatch(str(name))
    if found:
        return _map_at(int(found.group(1)))
    if ":" in str(name):
        raise PipesynthError(
            f"user metric '{name}' is not registered",
            "load its task first (src.tasks.registry.load_task registers the task.json's `module:function` "
            "metric with its higher_is_better), or call register_user_metric",
        )
    raise PipesynthError(
        f"unknown metric '{name}'",
        f"use one of: {', '.join(metric_names())}, or a user "
        "metric `module:function` with higher_is_better in task.json (docs/tasks.md)",
    )


def _import_user_module(spec: str, module_name: str, folder: Path | None) -> Any:
    """The module from `<folder>/<module path>.py` when it is there (loaded by path, so two task folders each
    with their own `metric.py` never share one), else from the installed packages."""
    try:
        local = folder / (module_name.replace(".", "/") + ".py") if folder is not None else None
        if local is not None and local.is_file():
            unique = (
                f"pipesynth_user_metric_{abs(hash(str(local.resolve())))}_{module_name.replace('.', '_')}"
            )
            loader_spec = importlib.util.spec_from_file_location(unique, local)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
            return module
        return importlib.import_module(module_name)
    except Exception as err:
        where = f" (looked in {folder} and on sys.path)" if folder is not None else ""
        raise PipesynthError(
            f"user metric '{spec}': module '{module_name}' does not import{where}: "
            f"{type(err).__name__}: {str(err).strip()[:200]}",
            f"put {module_name.replace('.', '/')}.py in the task folder (or install it), and make it import",
        ) from None


def _unkeyed(labels: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: str(v).split(":", 1)[-1], otypes=[object])(np.asarray(labels))


USER_PREDICTIONS = ("value", "probability", "label")


def register_user_metric(
    spec: str, higher_is_better: Any, search_path: str | Path | None = None, prediction: str = "value"
) -> Metric:
    """Import a user metric `module:function` (from `search_path` first, e.g. the task folder) and register it.

    The callable takes (y_true, y_pred) arrays of the submission's shape — numbers (one column per target) for
    prediction "value" / "probability", the labels as written for "label" — and returns a float. The direction
    must be declared: it is never guessed.
    """
    if prediction not in USER_PREDICTIONS:
        raise PipesynthError(
            f"user metric '{spec}': unknown metric_prediction '{prediction}'",
            f"use one of: {', '.join(USER_PREDICTIONS)}",
        )
    module_name, _, function_name = str(spec).partition(":")
    if not module_name or not function_name or not module_name.replace(".", "").replace("_", "").isalnum():
        raise PipesynthError(
            f"user metric '{spec}' is not of the form module:function", "name it like `my_metric:score`"
        )
    if not isinstance(higher_is_better, bool):
        raise PipesynthError(
            f"user metric '{spec}' has no declared direction (higher_is_better={higher_is_better!r})",
            'set "higher_is_better": true or false in task.json',
        )
    module = _import_user_module(spec, module_name, Path(search_path) if search_path is not None else None)
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise PipesynthError(
            f"user metric '{spec}': {module_name} has no callable '{function_name}'",
            f"define `def {function_name}(y_true, y_pred) -> float` in {module_name}",
        )

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        if prediction == "label":  # the grader compares label keys ("int:1"); the user's code sees the labels
            y_true, y_pred = _unkeyed(y_true), _unkeyed(y_pred)
        return float(fn(y_true, y_pred))

    metric = Metric(
        str(spec),
        higher_is_better,
        prediction,  # type: ignore[arg-type]
        score,
        description=f"user metric {spec}",
        source=str(spec),
    )
    _METRICS[metric.name] = metric
    return metric


# --------------------------------------------------------------------------- corpus categories


@dataclass(frozen=True)
class CategoryEntry:
    """One corpus metric category: its graded metric (None: none of ours fits) and further metrics it covers."""

    task_metric: str | None
    other_task_metrics: tuple[str, ...] = ()
    direction: str | None = None


@lru_cache(maxsize=8)
def _load_categories(path: str) -> dict[str, CategoryEntry]:
    file = Path(path)
    if not file.is_file():
        raise PipesynthError(
            f"metric category map '{file}' does not exist",
            "create it (category -> task_metric) or pass the path of an existing one",
        )
    raw = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
    if not isinstance(raw, dict):
        raise PipesynthError(f"metric category map '{file}' is not a mapping", "see conf/metric_categories/")
    mapping: dict[str, CategoryEntry] = {}
    for category, entry in raw.items():
        if not isinstance(entry, dict) or "task_metric" not in entry:
            raise PipesynthError(
                f"{file}: category '{category}' has no task_metric",
                "add `task_metric: <metric name or null>`",
            )
        names = [entry["task_metric"], *(entry.get("other_task_metrics") or [])]
        for name in names:
            if name is not None:
                get_metric(name)  # an unknown name in the map is a config error, reported now
        mapping[str(category)] = CategoryEntry(
            task_metric=entry["task_metric"],
            other_task_metrics=tuple(entry.get("other_task_metrics") or ()),
            direction=entry.get("direction"),
        )
    return mapping


def category_map(path: str | Path | None = None) -> dict[str, CategoryEntry]:
    """Corpus metric category -> its entry, in the file's order (conf/metric_categories/code4ml.yaml)."""
    return dict(_load_categories(str(path or DEFAULT_CATEGORIES_PATH)))


def metric_for_category(category: str, path: str | Path | None = None) -> Metric | None:
    """The registered metric a corpus category (e.g. "auc") is graded with, or None if it has none."""
    mapping = category_map(path)
    if category not in mapping:
        raise PipesynthError(
            f"unknown metric category '{category}'", f"use one of: {', '.join(sorted(mapping))}"
        )
    name = mapping[category].task_metric
    return get_metric(name) if name else None


def categories_for_metric(name: str, path: str | Path | None = None) -> list[str]:
    """Corpus categories a task graded by metric `name` belongs to; the first is the one to put in a prompt.

    Categories whose task_metric is `name` come first (in file order), then those listing it among
    other_task_metrics (e.g. rmse_log -> percentage_errors).
    """
    get_metric(name)
    mapping = category_map(path)
    primary = [c for c, e in mapping.items() if e.task_metric == name]
    secondary = [c for c, e in mapping.items() if name in e.other_task_metrics and c not in primary]
    return primary + secondary
