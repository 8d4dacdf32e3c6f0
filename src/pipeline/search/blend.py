"""Blends of search nodes: weights fitted on the members' out-of-fold predictions, one script that runs them all.

    weights, score = fit_weights(y_true, [oof_a, oof_b, oof_c], metric)    # Caruana et al. 2004
    code = render_blend(members, facts, metric, method="weights")         # a solution script

A single-plan ensemble (src.pipeline.search.ensemble_plan) averages models fitted on one feature matrix; a blend
combines whole solutions, each with its own preprocessing (word vs character n-grams, encodings, target
transforms), which is where diversity comes from. The weights are chosen by greedy forward selection with
replacement on the out-of-fold predictions of the public train — inner validation only, as AutoGluon's weighted
ensemble does. The blend script writes each member's script beside itself, runs it on ./input/, and combines the
members' submission.csv and oof_submission.csv with the fitted weights (src.pipeline.search.blend_outputs, embedded
verbatim), so the blend's own out-of-fold file is graded like any other node's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from src.pipeline.search import blend_outputs
from src.pipeline.search.blend_outputs import STACK_LEARNERS, STACK_METHODS, blend_arrays, stacked_oof
from src.tasks.metrics import Metric

TEMPLATE = Path(__file__).parent / "templates" / "blend.py.tmpl"


BLEND_SCRIPT_METHODS = ("weights", *STACK_METHODS)
PARALLEL = 2  # members a blend script runs at once (its graded run takes about their seconds / PARALLEL)
STACKER_WORDS = {
    "stack": "a logistic regression over every member's log-probabilities",
    "stack_gbdt": "LightGBM over every member's probabilities and the rows' text statistics",
}


@dataclass
class Member:
    """One solution in a blend: its journal node, script, weight and what the search changed to get it."""

    node_id: str
    code: str
    weight: float
    move: str
    validation_score: float | None = None


def blend_kind(metric: Metric) -> tuple[str, bool]:
    """(kind, normalize) for blend_outputs: labels are voted, probabilities and values averaged."""
    return ("label" if metric.prediction == "label" else "mean"), bool(metric.per_class)


def fit_weights(
    y_true: np.ndarray, preds: list[np.ndarray], metric: Metric, steps: int = 25
) -> tuple[np.ndarray, float]:
    """Greedy forward selection with replacement (Caruana et al. 2004): (weights summing to one, their score).

    Each step adds the member that most improves the blend; the best blend over all steps is returned, so the
    best single member alone (step one) is always a candidate.
    """
    kind, normalize = blend_kind(metric)
    counts = np.zeros(len(preds))
    best_counts, best_score = None, None
    for _ in range(max(1, steps)):
        trials = []
        for j in range(len(preds)):
            trial = counts.copy()
            trial[j] += 1
            trials.append(metric(y_true, blend_arrays(preds, trial, kind, normalize)))
        pick = int(np.argmax(trials) if metric.higher_is_better else np.argmin(trials))
        counts[pick] += 1
        if best_score is None or metric.better(trials[pick], best_score):
            best_counts, best_score = counts.copy(), float(trials[pick])
    assert best_counts is not None and best_score is not None
    return best_counts / best_counts.sum(), best_score


def stack_score(
    y_true: np.ndarray,
    preds: list[np.ndarray],
    metric: Metric,
    C: float = 1.0,
    learner: str = "linear",
    extra: np.ndarray | None = None,
) -> float | None:
    """Inner-validation score of a stack over one-probability-column-per-class predictions (None: no stack);
    learner: linear | gbdt (which also sees `extra`, per-row statistics aligned with y_true)."""
    if learner not in STACK_LEARNERS:
        raise ValueError(f"stack learner {learner!r} is not one of {STACK_LEARNERS}")
    if not metric.per_class or np.ndim(y_true) != 2:
        return None
    y = np.asarray(y_true).argmax(axis=1)
    if np.bincount(y, minlength=np.shape(y_true)[1]).min() < 2:
        return None  # a class too rare to cross-validate the stacker on
    oof = stacked_oof(preds, y, np.shape(y_true)[1], C=C, learner=learner, extra=extra)
    return float(metric(y_true, oof))


def _literal_code(code: str) -> str:
    return repr(code)  # a Python string literal the blend script writes back out byte for byte


def render_blend(
    members: list[Member],
    facts: dict[str, Any],
    metric: Metric,
    method: str = "weights",
    stack_c: float = 1.0,
) -> str:
    """The blend script of `members` for a task with these public facts: `weights` combines the members with a
    positive weight; `stack` fits a logistic regression over all members' log-probabilities in the script,
    `stack_gbdt` LightGBM over their probabilities and the rows' text statistics."""
    if method not in BLEND_SCRIPT_METHODS:
        raise ValueError(f"blend method {method!r} is not one of {BLEND_SCRIPT_METHODS}")
    kind, normalize = blend_kind(metric)
    stacked = method != "weights"
    used = [m for m in members if m.weight > 0 or stacked]
    if len(used) < 2:
        raise ValueError("a blend needs at least two members with a positive weight")
    listing = "\n".join(
        f"  {m.node_id} ({m.move}; inner validation {m.validation_score}): weight {m.weight:.3f}"
        for m in used
    )
    if stacked:
        listing += "\n  (stacked: " + STACKER_WORDS[method] + " replaces the weights)"
    source = inspect.getsource(blend_outputs)
    body = (
        source.split('"""', 2)[2].split("import pandas as pd", 1)[1].strip()
    )  # the functions, not the header
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        n_members=len(used),
        parallel=PARALLEL,
        metric=str(facts.get("metric")),
        listing=listing,
        id_column=repr(str(facts["id_column"])),
        kind=repr(kind),
        normalize=repr(normalize),
        method=repr(method),
        target=repr(str(list(facts["targets"])[0])),
        targets=repr([str(t) for t in facts["targets"]]),
        stack_c=repr(float(stack_c)),
        weights=repr([round(float(m.weight), 6) for m in used]),
        names=repr([m.node_id for m in used]),
        members="[\n" + "".join(f"    {_literal_code(m.code)},\n" for m in used) + "]",
        blend_functions=body,
    )
