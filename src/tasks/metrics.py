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

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from src.config import REPO_ROOT
from src.errors import PipesynthError

PredictionKind = Literal["label", "probability", "value"]
Domain = Literal["any", "non_negative", "positive"]

DEFAULT_CATEGORIES_PATH = REPO_ROOT / "conf" / "metric_categories" / "code4ml.yaml"
LOG_LOSS_EPS = 1e-15  # Kaggle's clipping for multi-class log loss


@dataclass(frozen=True)
class Metric:
    """A scoring function with a declared direction.

    prediction: "label" (a class label per row), "probability" (scores in [0, 1]) or "value" (a number).
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
    ]
}


def metric_names() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_METRICS)


def get_metric(name: str) -> Metric:
    """The registered metric called `name`; a PipesynthError names the known ones otherwise."""
    try:
        return _METRICS[name]
    except KeyError:
        raise PipesynthError(f"unknown metric '{name}'", f"use one of: {', '.join(metric_names())}") from None


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
