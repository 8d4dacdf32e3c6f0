"""How a task's labelled rows are split into public train and private test: `RandomSplit` (stratified for classification), `TimeSplit`, `GroupSplit`, `OfficialTestSplit` — `_target_` objects from config (conf/split/, conf/task_overrides/) — and `PredictionSplit` (predict mode: all labelled rows, the user's test file)."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from src.errors import PipesynthError
from src.tasks.readers import RawReader
from src.tasks.task import Task

log = logging.getLogger(__name__)


def _n_test(n_rows: int, test_fraction: float, max_test_rows: int | None) -> int:
    if not 0 < test_fraction < 1:
        raise PipesynthError(f"split.test_fraction={test_fraction} is not in (0, 1)", "use e.g. 0.2")
    n = int(round(n_rows * test_fraction))
    if max_test_rows:
        n = min(n, int(max_test_rows))
    if n_rows < 2:
        raise PipesynthError(f"only {n_rows} labelled row(s): cannot split", "check the raw training file")
    return min(max(n, 1), n_rows - 1)


def split_facts(
    kind: str, group_column: str | None = None, time_columns: list[str] | None = None
) -> dict[str, Any]:
    """The public `split` entry of task.json: kind (random | stratified | group | time) and its columns."""
    return {"kind": kind, "group_column": group_column, "time_columns": list(time_columns or [])}


class RandomSplit:
    """A seeded random split; stratified by the target labels for classification tasks (stratify=None: auto)."""

    name = "random"

    def __init__(
        self, test_fraction: float = 0.2, max_test_rows: int | None = None, stratify: bool | None = None
    ) -> None:
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows
        self.stratify = stratify

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_test = _n_test(len(labelled), self.test_fraction, self.max_test_rows)
        stratify = task.is_classification if self.stratify is None else self.stratify
        strata = None
        if stratify:
            # one stratum per label combination (multi-label: the tuple of labels); rare ones pooled
            strata = labelled[task.targets[0]].astype(str)
            for target in task.targets[1:]:
                strata = strata + "|" + labelled[target].astype(str)
            counts = strata.value_counts()
            strata = strata.where(~strata.isin(counts[counts < 2].index), "__rare__")
            if strata.nunique() > min(n_test, len(labelled) - n_test) or strata.value_counts().min() < 2:
                log.warning("%s: too few rows per class to stratify; splitting at random", task.slug)
                strata = None
        self.name = "stratified" if strata is not None else "random"
        train_idx, test_idx = train_test_split(
            np.arange(len(labelled)), test_size=n_test, random_state=seed, stratify=strata
        )
        # keep the raw row order inside each part: the split is in which rows, not how they are shuffled
        return labelled.iloc[np.sort(train_idx)], labelled.iloc[np.sort(test_idx)]

    def facts(self, task: Task) -> dict[str, Any]:
        """How the test was carved, for public/task.json (call after split: stratification may fall back)."""
        return split_facts(self.name)


class TimeSplit:
    """The last part of the period is the test (as in forecasting competitions): no test row precedes a train row.

    time_columns are sorted on in order (numbers numerically, other text as datetimes); the cut is moved so
    that rows sharing a time stamp stay on one side.
    """

    name = "time"

    def __init__(
        self, time_columns: list[str], test_fraction: float = 0.2, max_test_rows: int | None = None
    ) -> None:
        if not time_columns:
            raise PipesynthError("TimeSplit needs time_columns", "set split.time_columns: [<column>, ...]")
        self.time_columns = list(time_columns)
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows

    def _key(self, frame: pd.DataFrame, task: Task) -> pd.DataFrame:
        keys = {}
        for col in self.time_columns:
            if col not in frame.columns:
                raise PipesynthError(
                    f"task '{task.slug}': time column '{col}' is not in the training file",
                    f"fix split.time_columns in conf/task_overrides/{task.slug}.yaml",
                )
            numeric = pd.to_numeric(frame[col], errors="coerce")
            keys[col] = numeric if numeric.notna().all() else pd.to_datetime(frame[col], errors="raise")
        return pd.DataFrame(keys, index=frame.index)

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        keys = self._key(labelled, task)
        order = keys.sort_values(self.time_columns, kind="mergesort").index
        ordered = labelled.loc[order]
        key_tuples = list(keys.loc[order].itertuples(index=False, name=None))
        n = len(ordered)
        cut = n - _n_test(n, self.test_fraction, self.max_test_rows)
        # never split a time stamp: move the cut forward (smaller test), else backward
        forward = cut
        while 0 < forward < n and key_tuples[forward] == key_tuples[forward - 1]:
            forward += 1
        if forward < n:
            cut = forward
        else:
            while cut > 0 and key_tuples[cut] == key_tuples[cut - 1]:
                cut -= 1
        if cut in (0, n):
            raise PipesynthError(
                f"task '{task.slug}': all rows share one time stamp", "a time split needs several time stamps"
            )
        return ordered.iloc[:cut], ordered.iloc[cut:]

    def facts(self, task: Task) -> dict[str, Any]:
        return split_facts("time", time_columns=self.time_columns)


class GroupSplit:
    """Whole groups go to one side (e.g. Spaceship Titanic's travel groups, the `gggg` of `gggg_pp`).

    column: the column holding the group; pattern: an optional regex whose first group extracts it.
    """

    name = "group"

    def __init__(
        self,
        column: str,
        pattern: str | None = None,
        test_fraction: float = 0.2,
        max_test_rows: int | None = None,
    ) -> None:
        self.column = column
        self.pattern = pattern
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows

    def groups(self, frame: pd.DataFrame, task: Task) -> pd.Series:
        if self.column not in frame.columns:
            raise PipesynthError(
                f"task '{task.slug}': group column '{self.column}' is not in the training file",
                f"fix split.column in conf/task_overrides/{task.slug}.yaml",
            )
        values = frame[self.column]
        if self.pattern:
            extracted = values.str.extract(self.pattern, expand=False)
            values = extracted.fillna(values)  # a value the pattern does not match is its own group
        return values

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_test = _n_test(len(labelled), self.test_fraction, self.max_test_rows)
        splitter = GroupShuffleSplit(n_splits=1, test_size=n_test / len(labelled), random_state=seed)
        train_idx, test_idx = next(splitter.split(labelled, groups=self.groups(labelled, task)))
        return labelled.iloc[np.sort(train_idx)], labelled.iloc[np.sort(test_idx)]

    def facts(self, task: Task) -> dict[str, Any]:
        # the pattern travels too: the group of `gggg_pp` is `gggg`, not the whole (unique) id
        return {**split_facts("group", group_column=self.column), "group_pattern": self.pattern}


class OfficialTestSplit:
    """The competition's own labelled test set (e.g. detecting-insults' test_with_solutions.csv): no new split.

    The public train is the whole raw training file; test_fraction/max_test_rows are accepted and unused.
    """

    name = "official_test"

    def __init__(self, test_file: str, test_fraction: float = 0.2, max_test_rows: int | None = None) -> None:
        self.test_file = test_file

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        test = read_raw(self.test_file)
        missing = [t for t in task.targets if t not in test.columns]
        if missing:
            raise PipesynthError(
                f"task '{task.slug}': official test {self.test_file} has no label column(s) {missing}",
                "point split.test_file at the labelled test file",
            )
        return labelled, test

    def facts(self, task: Task) -> dict[str, Any]:
        # the competition's own test: nothing says how it was drawn, so inner validation stays the default
        kind = "stratified" if task.is_classification else "random"
        return {**split_facts(kind), "official_test": True}


class PredictionSplit:
    """Predict mode: the public train is every labelled row, the test is the user's own unlabelled file.

    evaluation_split: the task's evaluation split config; its kind (time, group) tells inner validation how to
    fold, and a time split's rows stay in time order. There are no answers: nothing prepared this way is graded
    (`python -m src.generate mode=predict`).
    """

    name = "prediction"
    unlabelled_test = True

    def __init__(
        self,
        test_file: str,
        evaluation_split: dict[str, Any] | None = None,
        test_fraction: float = 0.2,
        max_test_rows: int | None = None,
    ) -> None:
        self.test_file = test_file
        self.evaluation_split = dict(evaluation_split or {})

    def _evaluation(self) -> Any:
        from hydra.utils import instantiate

        return instantiate(self.evaluation_split) if self.evaluation_split.get("_target_") else None

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        evaluation = self._evaluation()
        if isinstance(evaluation, TimeSplit):  # past to future, as the evaluation's train was
            keys = evaluation._key(labelled, task)
            labelled = labelled.loc[keys.sort_values(evaluation.time_columns, kind="mergesort").index]
        test = read_raw(self.test_file).copy()
        for target in task.targets:
            if target not in test.columns:
                test[target] = ""  # unknown: the rows to predict
        return labelled, test

    def facts(self, task: Task) -> dict[str, Any]:
        evaluation = self._evaluation()
        if isinstance(evaluation, (TimeSplit, GroupSplit)):
            facts = evaluation.facts(task)
        else:
            facts = split_facts("stratified" if task.is_classification else "random")
        return {**facts, "prediction": True}


# --------------------------------------------------------------------------- forecasting tasks

# "forecast", "predict the next year / future", "sales for the following months": a later period is asked for
FORECAST_WORDS = re.compile(
    r"\bforecast\w*|\bpredict\w*\s+(?:\w+\s+){0,4}?(?:the\s+)?(?:future|next|upcoming|following|coming|"
    r"subsequent)\b|\b(?:next|upcoming|following|coming)\s+(?:\d+\s+)?(?:year|quarter|month|week|day|hour)s?\b",
    re.IGNORECASE,
)
TIME_NAMES = re.compile(r"(?:^|_|\b)(?:date|datetime|timestamp|time|dt|day|period)(?:$|_|\b)", re.IGNORECASE)


def asks_for_forecast(description: str) -> bool:
    """True when the description asks to predict a later period (forecasting wording)."""
    return bool(FORECAST_WORDS.search(description or ""))


def time_column(frame: pd.DataFrame, sample: int = 500) -> str | None:
    """The column holding dates/times: a name like date / datetime / timestamp whose values parse as datetimes
    (or, failing a name, the first text column whose sampled values all parse as full dates), else None."""

    def parses(col: str) -> bool:
        values = frame[col].dropna().astype(str).str.strip()
        values = values[values != ""].head(sample)
        if values.empty or pd.to_numeric(values, errors="coerce").notna().all():
            return False  # numbers (ids, counts) are not dates by themselves
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        return bool(parsed.notna().all()) and parsed.nunique() > 1

    named = [c for c in frame.columns if TIME_NAMES.search(str(c))]
    for col in named:
        if parses(col):
            return str(col)
    dated = r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4}"  # an ISO or d/m/y date in the text
    for col in frame.columns:
        text = frame[col]
        if col in named or not (pd.api.types.is_string_dtype(text) or text.dtype == object):
            continue
        if text.dropna().astype(str).str.contains(dated).mean() > 0.99 and parses(col):
            return str(col)
    return None


def is_forecasting(task: Task, description: str) -> bool:
    """The competition's test is a later period: a time-series task, or a description asking for a forecast."""
    return task.data_type == "time_series" or asks_for_forecast(description)


def default_time_split(task: Task, labelled: pd.DataFrame, description: str) -> dict[str, Any] | None:
    """The split a forecasting task gets when nothing overrides the default random split: TimeSplit on its date
    column, the test being the latest period (None: not forecasting, or no date column to order by)."""
    if task.split_overridden or not str(task.split.get("_target_", "")).endswith("RandomSplit"):
        return None
    if not is_forecasting(task, description):
        return None
    column = time_column(labelled.drop(columns=[c for c in task.targets if c in labelled.columns]))
    if column is None:
        log.warning(
            "%s: a forecasting task without a date column to split on; splitting at random", task.slug
        )
        return None
    kept = {k: v for k, v in task.split.items() if k in ("test_fraction", "max_test_rows")}
    return {"_target_": "src.tasks.splits.TimeSplit", "time_columns": [column], **kept}
