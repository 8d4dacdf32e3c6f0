"""Rate a graded score against the competition's real final leaderboard: position N of M, medal, caveats.

    from src.tasks.rating import rate
    rate(task, 0.78).to_dict()
    # {"position": 412, "teams": 1541, "beaten_fraction": 0.73, "above_median": True, "medal": None, ...}

Position: 1 + the number of teams at least as good. Kaggle breaks a tie by submission time (the earlier
submission ranks first), and a score rated now is the latest submission, so it is placed after every team it
ties with (`tied` counts them; on some boards hundreds of teams share the top score). M is the number of teams
on the leaderboard (the score is not inserted into it, so the position can be M + 1). The medal follows from
the position, with Kaggle's progression rules for the team count:

    teams      gold                 silver         bronze
    < 100      top 10%              top 20%        top 40%
    100-249    top 10 teams         top 20%        top 40%
    250-999    top 10 + 0.2% teams  top 50 teams   top 100 teams
    >= 1000    top 10 + 0.2% teams  top 5%         top 10%

A medal needs a position at or above that position: a score that ties the last medal team comes after it.

Uncertainty: the test is a sample, so the score is too. `bootstrap_scores` resamples the graded test rows
(seeded, 1,000 times by default) and `rate(task, score, samples)` turns the resampled scores into a position
interval (the central 95 % of the resampled scores, placed on the leaderboard) and the share of resamples in
each medal band; the medal is stated as certain only when the whole interval lies inside one band. Two solutions
of the same test compare on the same resamples (`paired_bootstrap_scores`, `beaten_fractions`): an interval of
the difference in teams beaten, with the test rows' luck cancelled. Caveats are flagged, never hidden:
rolling or leaked leaderboards declared in `conf/task_overrides/<slug>.yaml`, perfect scores at the top (a
leak signal), a leaderboard order that contradicts the metric's direction. Positions are approximate whenever the
test split is our own rather than the competition's test (the approximation mle-bench makes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import get_class

from src.errors import PipesynthError
from src.tasks.metrics import Metric, get_metric
from src.tasks.splits import OfficialTestSplit, is_forecasting
from src.tasks.task import Task

FLAG_TEXT = {
    "rolling": "rolling leaderboard",
    "leaked": "leaked labels on the leaderboard",
    "different_test": "the leaderboard was scored on a different test set",
}


@dataclass
class Rating:
    """Where a score would place on the real leaderboard. position is None when no rating is possible (reason)."""

    task: str
    score: float | None
    position: int | None = None
    teams: int | None = None
    beaten: int | None = None
    tied: int | None = None  # teams with the same score (placed before it, as Kaggle orders ties)
    beaten_fraction: float | None = None
    above_median: bool | None = None
    medal: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    approximate: bool = True
    reason: str | None = None
    leaderboard_source: str | None = None
    # bootstrap over the test rows (None when not resampled)
    position_low: int | None = None  # best position of the interval
    position_high: int | None = None  # worst position of the interval
    score_low: float | None = None  # the interval's score bounds, best and worst end
    score_high: float | None = None
    medal_probs: dict[str, float] | None = None  # gold, silver, bronze, none: share of resamples
    medal_certain: bool | None = None  # the whole interval inside the band of `medal` (or of no medal)
    resamples: int | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.position is None:
            return f"{self.task}: not rated ({self.reason})"
        medal = f", {self.medal}" if self.medal else ""
        if self.medal and self.medal_certain is False:
            medal += f" (p={self.medal_probs.get(self.medal, 0):.2f})" if self.medal_probs else "?"
        interval = f" [{self.position_low}–{self.position_high}]" if self.position_low is not None else ""
        flags = f" [{'; '.join(self.flags)}]" if self.flags else ""
        return f"{self.task}: position {self.position}{interval} of {self.teams}{medal}{flags}"


def medal_positions(teams: int) -> dict[str, int]:
    """The last leaderboard position (1-based) that earns each medal for a competition with `teams` teams."""
    if teams < 1:
        raise ValueError("a leaderboard needs at least one team")
    if teams < 100:
        gold, silver, bronze = max(1, int(teams * 0.1)), max(1, int(teams * 0.2)), max(1, int(teams * 0.4))
    elif teams < 250:
        gold, silver, bronze = 10, max(1, int(teams * 0.2)), max(1, int(teams * 0.4))
    elif teams < 1000:
        gold, silver, bronze = 10 + int(teams * 0.002), 50, 100
    else:
        gold, silver, bronze = 10 + int(teams * 0.002), max(1, int(teams * 0.05)), max(1, int(teams * 0.1))
    return {"gold": gold, "silver": silver, "bronze": bronze}


def rank_score(
    score: float, leaderboard: Sequence[float], metric: Metric, decimals: int | None = None
) -> dict[str, Any]:
    """Position, teams beaten, median and medal of `score` among `leaderboard` scores (any order).

    decimals: round `score` to the leaderboard's shown precision first, so that 0.775113 ties with 0.77511.
    """
    scores = np.asarray([s for s in leaderboard if s is not None and np.isfinite(s)], dtype=float)
    if scores.size == 0:
        raise ValueError("empty leaderboard")
    if decimals is not None:
        score = round(float(score), decimals)
    best_first = np.sort(scores)[::-1] if metric.higher_is_better else np.sort(scores)
    better = int(np.sum([metric.better(s, score) for s in best_first]))
    worse = int(np.sum([metric.better(score, s) for s in best_first]))
    teams = int(best_first.size)
    tied = teams - better - worse
    position = better + tied + 1  # after the tied teams: they submitted first
    median = float(np.median(best_first))
    positions = medal_positions(teams)
    thresholds = {name: float(best_first[pos - 1]) for name, pos in positions.items()}
    return {
        "position": position,
        "teams": teams,
        "beaten": worse,
        "tied": tied,
        "beaten_fraction": worse / teams,
        "above_median": metric.better(score, median),
        "medal": medal_for_position(position, positions),
        "thresholds": {**thresholds, "median": median},
    }


def medal_for_position(position: int, positions: dict[str, int]) -> str | None:
    """The best medal whose last position (`medal_positions`) is at or below `position`, or None."""
    return next((m for m in ("gold", "silver", "bronze") if position <= positions[m]), None)


def positions_of(scores: np.ndarray, leaderboard: Sequence[float], metric: Metric) -> np.ndarray:
    """Vectorised `rank_score` position of each score: 1 + the teams at least as good."""
    board = np.sort(np.asarray([s for s in leaderboard if s is not None and np.isfinite(s)], dtype=float))
    values = np.asarray(scores, dtype=float)
    if metric.higher_is_better:
        return 1 + board.size - np.searchsorted(board, values, side="left")
    return 1 + np.searchsorted(board, values, side="right")


def bootstrap_counts(n: int, n_resamples: int, seed: int, size: int | None = None) -> np.ndarray:
    """(n_resamples, n) row counts of seeded resamples with replacement of `size` rows (default n) from n."""
    rng = np.random.default_rng(seed)
    size = n if size is None else int(size)
    rows = rng.integers(0, n, size=(n_resamples, size))
    flat = (rows + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)


def bootstrap_scores(
    metric: Metric,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    size: int | None = None,
    chunk: int = 100,
) -> np.ndarray:
    """Scores of `n_resamples` seeded resamples of the test rows (each of `size` rows, default all n).

    Resamples are drawn in chunks so memory stays at chunk x n counts; the metric scores a whole chunk in one
    vectorised pass where it can (Metric.resampled). Resamples the metric cannot score (e.g. an AUC over one
    class) are dropped.
    """
    return paired_bootstrap_scores(metric, y_true, [y_pred], n_resamples, seed, size, chunk)[0]


def paired_bootstrap_scores(
    metric: Metric,
    y_true: np.ndarray,
    preds: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    size: int | None = None,
    chunk: int = 100,
) -> np.ndarray:
    """(len(preds), m) scores of several predictions of the same test rows on the same seeded resamples.

    Column b of every row is the same resample, so differences between rows are paired (the test rows' luck
    cancels); a resample any prediction cannot score is dropped for all of them.
    """
    n = len(y_true)
    if n == 0 or n_resamples <= 0 or not len(preds):
        return np.empty((len(preds), 0))
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        counts = bootstrap_counts(n, b, int(rng.integers(0, 2**63 - 1)), size=size)
        out.append(np.stack([metric.bootstrap(y_true, pred, counts) for pred in preds]))
    scores = np.concatenate(out, axis=1)
    return scores[:, np.isfinite(scores).all(axis=0)]


def beaten_fractions(
    scores: np.ndarray, leaderboard: Sequence[float], metric: Metric, decimals: int | None = None
) -> np.ndarray:
    """Share of the leaderboard's teams each of `scores` beats strictly (vectorised `rank_score` beaten_fraction)."""
    board = np.sort(np.asarray([s for s in leaderboard if s is not None and np.isfinite(s)], dtype=float))
    if board.size == 0:
        raise ValueError("empty leaderboard")
    values = np.asarray(scores, dtype=float)
    if decimals is not None:
        values = np.round(values, decimals)
    if metric.higher_is_better:
        worse = np.searchsorted(board, values, side="left")  # teams strictly below
    else:
        worse = board.size - np.searchsorted(board, values, side="right")  # teams strictly above
    return worse / board.size


def read_leaderboard(task: Task) -> tuple[list[float], int | None]:
    """The task's leaderboard scores (rank order) and their shown decimals (None when not plain decimals)."""
    frame, decimals = _read_leaderboard(task)
    return frame["score"].tolist(), decimals


def _add_interval(
    rating: Rating,
    scores: np.ndarray,
    samples: np.ndarray,
    metric: Metric,
    decimals: int | None,
    confidence: float,
) -> None:
    """Fill the rating's interval fields from bootstrap `samples` of its score."""
    if decimals is not None:
        samples = np.round(samples, decimals)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    best, worst = (hi, lo) if metric.higher_is_better else (lo, hi)
    # positions are monotone in the score: the interval's ends are the positions of its score bounds
    position = {s: rank_score(s, scores, metric)["position"] for s in (float(best), float(worst))}
    assert rating.position is not None and rating.score is not None
    rating.position_low = min(position[float(best)], rating.position)  # the interval always holds the point
    rating.position_high = max(position[float(worst)], rating.position)
    rating.score_low, rating.score_high = float(best), float(worst)
    assert rating.teams is not None
    medal_at = medal_positions(rating.teams)
    sample_positions = positions_of(samples, scores, metric)
    bands = np.array([medal_for_position(int(p), medal_at) or "none" for p in sample_positions], dtype=object)
    rating.medal_probs = {m: float(np.mean(bands == m)) for m in ("gold", "silver", "bronze", "none")}
    ends = {medal_for_position(p, medal_at) or "none" for p in (rating.position_low, rating.position_high)}
    rating.medal_certain = ends == {rating.medal or "none"}
    rating.resamples = int(samples.size)
    rating.confidence = confidence


def _read_leaderboard(task: Task) -> tuple[pd.DataFrame, int | None]:
    path = task.leaderboard_path
    frame = pd.read_csv(path, dtype=str)
    if "score" not in frame.columns:
        raise PipesynthError(f"{path} has no 'score' column", "the leaderboard needs columns rank,score")
    text = frame["score"].str.strip()
    scores = pd.to_numeric(text, errors="coerce")
    frame = frame.assign(score=scores).loc[scores.notna()]
    if "rank" in frame.columns:
        frame = frame.assign(rank=pd.to_numeric(frame["rank"], errors="coerce")).sort_values(
            "rank", kind="mergesort"
        )
    plain = text[scores.notna()]
    decimals = None
    if plain.str.fullmatch(r"-?\d+(\.\d+)?").all():
        decimals = int(plain.str.split(".").str[1].fillna("").str.len().max())
    return frame, decimals


def _leaderboard_flags(task: Task, frame: pd.DataFrame, metric: Metric) -> list[str]:
    flags = [FLAG_TEXT.get(flag, flag) for flag in task.leaderboard_flags]
    perfect = int(sum(metric.is_perfect(s) for s in frame["score"]))
    if perfect:
        flags.append(
            f"{perfect} perfect score(s) at the top ({metric.name} = {metric.perfect:g}): likely leaked labels"
        )
    ranked = frame["score"].to_numpy(dtype=float)
    if ranked.size > 1 and metric.better(ranked[-1], ranked[0]):
        flags.append(f"leaderboard order contradicts the metric's direction ({metric.name})")
    return flags


def _forecasting(task: Task) -> bool:
    description = task.description_path.read_text(errors="replace") if task.description_path.is_file() else ""
    return is_forecasting(task, description)


def _official_test(task: Task) -> bool:
    target = task.split.get("_target_")
    return bool(target) and issubclass(get_class(target), OfficialTestSplit)


def rate(
    task: Task,
    score: float | None,
    samples: np.ndarray | None = None,
    confidence: float = 0.95,
    split_method: str | None = None,
) -> Rating:
    """Rate `score` on the task's real leaderboard; a Rating without position (and a reason) when impossible.

    samples: bootstrap scores of the same submission (`bootstrap_scores`) for the position interval and the
    medal probabilities; None or empty: a point rating only.
    split_method: how our test was carved (PreparedTask.split_method). A forecasting competition's test is a later
    period: a test of another kind (rows of the same dates, drawn at random) is flagged and earns no medal.
    """
    rating = Rating(
        task=task.slug,
        score=score,
        approximate=not _official_test(task),
        leaderboard_source=task.leaderboard_source,
    )
    if task.leaderboard_note:
        rating.notes.append(task.leaderboard_note)
    if score is None or not math.isfinite(score):
        rating.reason = "no valid score to rate"
        return rating
    if not task.has_leaderboard:
        rating.reason = f"no leaderboard.csv in {task.root}"
        return rating
    metric = get_metric(task.metric)
    frame, decimals = _read_leaderboard(task)
    if frame.empty:
        rating.reason = f"{task.leaderboard_path} holds no scores"
        return rating
    ranked = rank_score(score, frame["score"].tolist(), metric, decimals=decimals)
    for key, value in ranked.items():
        setattr(rating, key, value)
    rating.flags = _leaderboard_flags(task, frame, metric)
    if ranked["tied"]:
        rating.notes.append(
            f"ties {ranked['tied']} team(s); Kaggle ranks the earlier submissions first, so it is placed after them"
        )
    if samples is not None and len(samples):
        _add_interval(
            rating, frame["score"].tolist(), np.asarray(samples, dtype=float), metric, decimals, confidence
        )
    if split_method is not None and split_method not in ("time", "official_test") and _forecasting(task):
        rating.flags.append(
            f"our test split is {split_method} but the competition's is a later period: no medal on it"
        )
        rating.medal, rating.medal_certain, rating.medal_probs = None, None, None
    if task.teams is not None and task.teams != ranked["teams"]:
        rating.notes.append(f"task.json says {task.teams} teams; the leaderboard lists {ranked['teams']}")
    if rating.approximate:
        rating.notes.append("position is approximate: our test split is carved from the competition's train")
    return rating


def paired_beaten(
    task: Task,
    prepared: Any,
    submissions: Sequence[str | Path],
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray | None:
    """(len(submissions), m) bootstrap samples of the share of teams beaten (percent) by each submission of the
    same test (`prepared`, a PreparedTask), all on the same resamples: row differences are paired gains.

    None when the task has no leaderboard or a submission does not grade.
    """
    from src.tasks.grading import grade  # grading depends on preparation; rating needs it only here

    if not task.has_leaderboard:
        return None
    grades = [grade(prepared, Path(path)) for path in submissions]
    if not grades or not all(g.valid for g in grades):
        return None
    metric = get_metric(task.metric)
    board, decimals = read_leaderboard(task)
    if not board:
        return None
    samples = paired_bootstrap_scores(
        metric, grades[0].y_true, [g.y_pred for g in grades], n_resamples=n_resamples, seed=seed
    )
    return np.stack([100.0 * beaten_fractions(row, board, metric, decimals) for row in samples])
