"""Grade a submission.csv against the private answers: validate first, then score.

    from src.tasks.grading import grade
    result = grade(prepared, workdir / "submission.csv")
    result.score, result.valid, result.reason      # 0.78, True, None  |  None, False, "12 ids are missing ..."

A score only ever comes from here: the submission compared with `private/answers.csv`. Every check that fails
gives a reason a person (or a repair loop) can act on: the file, its columns, the row count, the ids, empty /
NaN / infinite cells, non-numeric values, probability ranges, the metric's domain, unknown labels.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.tasks.metrics import Metric, get_metric
from src.tasks.prepare import PreparedTask, typed_label

log = logging.getLogger(__name__)

MISSING_TOKENS = {"", "nan", "na", "n/a", "null", "none", "<na>"}


@dataclass(frozen=True)
class Grade:
    """score is None exactly when the submission is invalid (then reason says why).

    y_true / y_pred: the aligned arrays the score was computed from (valid grades only), so a rating can
    resample the test rows; they stay out of to_dict().
    """

    score: float | None
    valid: bool
    reason: str | None = None
    metric: str = ""
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    y_pred: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("y_true", "y_pred")}


class InvalidSubmission(Exception):
    """Raised inside the grader for a submission that cannot be scored; becomes Grade(valid=False)."""


def _examples(values: Any, k: int = 3) -> str:
    items = sorted(map(str, values))[:k]
    return ", ".join(repr(v) for v in items)


def _label_key(text: str) -> str:
    # "1" and "1.0" are the same label, as are "True" and "TRUE"; True and 1 are not
    value = typed_label(text)
    return f"{type(value).__name__}:{value}"


def _read_submission(path: Path, expected: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise InvalidSubmission(f"no submission file at {path}")
    if path.stat().st_size == 0:
        raise InvalidSubmission("submission.csv is empty")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidSubmission(f"submission.csv does not parse as CSV: {str(err).strip()[:200]}") from None
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise InvalidSubmission(f"duplicate column(s) {duplicated}")
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise InvalidSubmission("; ".join(parts) + f" (expected exactly {expected})")
    return frame[expected]


def _check_ids(frame: pd.DataFrame, answers: pd.DataFrame, id_col: str) -> None:
    if len(frame) != len(answers):
        raise InvalidSubmission(f"{len(frame)} rows, expected {len(answers)} (one per test id)")
    ids = frame[id_col]
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InvalidSubmission(
            f"{dup.nunique()} duplicate id(s) in '{id_col}', e.g. {_examples(dup.unique())}"
        )
    got, want = set(ids), set(answers[id_col])
    if got != want:
        missing, unexpected = want - got, got - want
        raise InvalidSubmission(
            f"ids in '{id_col}' do not match the test ids: {len(missing)} missing (e.g. {_examples(missing)}), "
            f"{len(unexpected)} unexpected (e.g. {_examples(unexpected)})"
        )


def _numeric(frame: pd.DataFrame, columns: list[str], metric: Metric) -> np.ndarray:
    values = {}
    for col in columns:
        text = frame[col].str.strip()
        empty = text.str.lower().isin(MISSING_TOKENS)
        if empty.any():
            raise InvalidSubmission(f"column '{col}' has {int(empty.sum())} empty/NaN value(s)")
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna()
        if bad.any():
            raise InvalidSubmission(
                f"column '{col}' has {int(bad.sum())} non-numeric value(s), e.g. {_examples(text[bad].unique())}"
            )
        if not np.isfinite(numbers.to_numpy(dtype=float)).all():
            raise InvalidSubmission(f"column '{col}' has infinite value(s)")
        values[col] = numbers.to_numpy(dtype=float)
    array = np.column_stack([values[c] for c in columns])
    if metric.prediction == "probability" and ((array < 0) | (array > 1)).any():
        bad_cols = [c for j, c in enumerate(columns) if ((array[:, j] < 0) | (array[:, j] > 1)).any()]
        raise InvalidSubmission(f"probabilities must lie in [0, 1]; column(s) {bad_cols} do not")
    if metric.domain == "positive" and (array <= 0).any():
        raise InvalidSubmission(f"{metric.name} takes a logarithm: every prediction must be > 0")
    if metric.domain == "non_negative" and (array < 0).any():
        raise InvalidSubmission(f"{metric.name} takes log(1 + x): every prediction must be >= 0")
    return array


def _labels(frame: pd.DataFrame, columns: list[str], known: set[str]) -> np.ndarray:
    keys = {}
    for col in columns:
        text = frame[col].str.strip()
        empty = text.str.lower().isin(MISSING_TOKENS)
        if empty.any():
            raise InvalidSubmission(f"column '{col}' has {int(empty.sum())} empty/NaN value(s)")
        keys[col] = text.map(_label_key)
        unknown = text[~keys[col].isin(known)]
        if len(unknown):
            raise InvalidSubmission(
                f"column '{col}' has {len(unknown)} value(s) outside the known labels, "
                f"e.g. {_examples(unknown.unique())}"
            )
    return np.column_stack([keys[c].to_numpy() for c in columns])


def _whole_numbers(array: np.ndarray, columns: list[str], metric: Metric) -> np.ndarray:
    fractional = ~np.isclose(array, np.rint(array))
    if fractional.any():
        bad = [c for j, c in enumerate(columns) if fractional[:, j].any()]
        raise InvalidSubmission(
            f"{metric.name} scores whole-number ratings: column(s) {bad} hold {int(fractional.sum())} "
            f"non-integer value(s), e.g. {_examples(np.unique(array[fractional]))}"
        )
    return np.rint(array)


def _ranked_labels(cells: pd.Series, column: str, known: set[str], k: int) -> np.ndarray:
    """(n, k) label keys of space-separated ranked labels per row (best first), padded with '' past the last."""
    tokens = cells.str.split()
    empty = tokens.map(len) == 0
    if empty.any():
        raise InvalidSubmission(
            f"column '{column}' has {int(empty.sum())} empty row(s): give up to {k} labels"
        )
    ranked = np.full((len(cells), k), "", dtype=object)
    unknown: set[str] = set()
    for row, labels in enumerate(tokens):
        for j, label in enumerate(labels[:k]):
            key = _label_key(label)
            if key not in known:
                unknown.add(label)
            ranked[row, j] = key
    if unknown:
        raise InvalidSubmission(
            f"column '{column}' has {len(unknown)} label(s) outside the known labels, e.g. {_examples(unknown)}"
        )
    return ranked


def _squeeze(array: np.ndarray) -> np.ndarray:
    return array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array


def _numeric_answers(answers: pd.DataFrame, columns: list[str], metric: Metric) -> np.ndarray:
    values = []
    for col in columns:
        numbers = pd.to_numeric(answers[col].map(typed_label), errors="coerce")
        if numbers.isna().any():
            bad = answers[col][numbers.isna()].unique()
            raise InvalidSubmission(
                f"the answers of '{col}' hold class names (e.g. {_examples(bad)}) but {metric.name} scores "
                f"numbers: this task cannot be graded as configured (fix targets/metric in its task.json, or "
                f"give it a sample submission with one probability column per class)"
            )
        values.append(numbers.to_numpy(dtype=float))
    return np.column_stack(values)


def grade(prepared: PreparedTask, submission_path: str | Path) -> Grade:
    """Validate `submission_path` against the prepared task, then score it with the task's metric.

    Never raises: anything that stops scoring (a malformed submission, a task the metric cannot score, an
    unreadable answers file) comes back as an invalid Grade whose reason says what went wrong.
    """
    try:
        return _grade(prepared, Path(submission_path))
    except Exception as err:  # a grader defect must not stop a suite: report it as this record's reason
        log.exception("grading %s raised", prepared.slug)
        return Grade(
            score=None,
            valid=False,
            reason=f"grader error: {type(err).__name__}: {str(err).strip()[:300]}",
            metric=prepared.metric,
        )


def _grade(prepared: PreparedTask, submission_path: Path) -> Grade:
    metric = get_metric(prepared.metric)
    id_col = prepared.id_column
    columns = list(prepared.submission_columns)
    try:
        answers = pd.read_csv(prepared.answers_path, dtype=str, keep_default_na=False, na_filter=False)
        frame = _read_submission(Path(submission_path), [id_col, *columns])
        _check_ids(frame, answers, id_col)
        # align rows to the answers' order; ids were checked to be the same set
        frame = frame.set_index(id_col).loc[answers[id_col]].reset_index()
        class_columns = [c for c in columns if c not in prepared.targets]
        if class_columns:  # one probability column per class (multi-class log loss)
            y_pred = _numeric(frame, columns, metric)
            if (y_pred.sum(axis=1) <= 0).any():
                raise InvalidSubmission("every row needs a positive probability for at least one class")
            truth = answers[prepared.targets[0]].map(_label_key).to_numpy()
            class_keys = np.array([_label_key(c) for c in columns])
            y_true = (truth[:, None] == class_keys[None, :]).astype(float)
        elif metric.ordinal:  # whole-number ratings, compared by their distance (quadratic weighted kappa)
            y_true = _squeeze(_numeric_answers(answers, columns, metric))
            y_pred = _squeeze(_whole_numbers(_numeric(frame, columns, metric), columns, metric))
        elif metric.prediction == "ranking":
            known = {_label_key(str(v)) for v in prepared.class_labels or []}
            known |= set(answers[columns].stack().map(_label_key))
            y_pred = _ranked_labels(frame[columns[0]], columns[0], known, int(metric.k or 1))
            y_true = answers[columns[0]].map(_label_key).to_numpy()
        elif metric.prediction == "label":
            known = {_label_key(str(v)) for v in prepared.class_labels or []}
            known |= set(answers[columns].stack().map(_label_key))
            y_pred = _squeeze(_labels(frame, columns, known))
            y_true = _squeeze(np.column_stack([answers[c].map(_label_key).to_numpy() for c in columns]))
        else:
            y_true = _squeeze(_numeric_answers(answers, columns, metric))
            y_pred = _squeeze(_numeric(frame, columns, metric))
    except InvalidSubmission as err:
        return Grade(score=None, valid=False, reason=str(err), metric=metric.name)
    try:
        score = metric(y_true, y_pred)
    except ValueError as err:
        # e.g. an AUC over answers holding one class: a defect of the split, not of the solution
        log.error("grading %s failed: %s", prepared.slug, err)
        return Grade(score=None, valid=False, reason=f"grader error: {err}", metric=metric.name)
    if not np.isfinite(score):
        return Grade(
            score=None, valid=False, reason=f"{metric.name} is not finite ({score})", metric=metric.name
        )
    return Grade(score=score, valid=True, reason=None, metric=metric.name, y_true=y_true, y_pred=y_pred)
