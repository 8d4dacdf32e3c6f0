"""A validation split carved from the PUBLIC train only, so candidates can be graded without private answers.

    folds = build_validation_split(public_dir, out_dir, scheme="auto", folds=1, fraction=0.2, seed=0)
    for fold in folds:                         # fold.public_dir is a task folder a solution can run on
        result = sandbox.run(script, fold.public_dir, workdir)
        graded = grade(fold.prepared, workdir / "submission.csv")   # against the fold's held-out labels

Each fold is a prepared-task pair written under `out_dir/fold<i>/`:
  public/   train.csv (the fold's training rows, all columns), test.csv (the held-out rows, feature columns
            of public/test.csv only), sample_submission.csv (public/sample_submission.csv's columns and
            placeholder values, one row per held-out id), task.json, description.md and any other public file
  private/  answers.csv (id + targets of the held-out rows)

Only files from `public_dir` are read: the task's private answers are never touched. Rows keep their text
exactly (read and written as strings). Schemes: `holdout` (one seeded split, stratified for classification),
`kfold` (k seeded folds, stratified for classification), `time` (the held-out rows are the last ones in file
order — public train keeps the raw row order — or expanding-window folds), `auto` (time for time series,
else holdout for folds=1 and kfold otherwise).

The split mirrors how the task's test was carved out (task.json `split`, see src.tasks.prepare): a task split by
group keeps every group on one side of every fold (GroupShuffleSplit / GroupKFold on `group_column`, or on the
part `group_pattern` extracts from it); a task split by time orders the rows by `time_columns` and holds out
the latest ones (or expanding-window folds), whatever `scheme` says.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

from src.errors import PipesynthError
from src.tasks.prepare import PreparedTask

log = logging.getLogger(__name__)

SCHEMES = ("auto", "holdout", "kfold", "time")
CLASSIFICATION = ("binary_classification", "multiclass_classification", "multilabel_classification")
_READ = {"dtype": str, "keep_default_na": False, "na_filter": False}
_SPLIT_FILES = ("train.csv", "test.csv", "sample_submission.csv")


@dataclass
class ValidationFold:
    """One fold: a public folder to run a solution on and a PreparedTask to grade it with."""

    index: int
    scheme: str
    public_dir: Path
    prepared: PreparedTask
    n_train: int
    n_test: int


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PipesynthError(
            f"{path.name} is missing from the public task folder {path.parent}",
            "prepare the task with src.tasks.prepare.prepare_task (it writes public/train.csv, test.csv, "
            "sample_submission.csv and task.json)",
        )
    return pd.read_csv(path, **_READ)


def _strata(frame: pd.DataFrame, targets: list[str], n_test: int) -> pd.Series | None:
    """Label combination per row (rare ones pooled), or None when there are too few rows per class."""
    strata = frame[targets[0]].astype(str)
    for target in targets[1:]:
        strata = strata + "|" + frame[target].astype(str)
    counts = strata.value_counts()
    strata = strata.where(~strata.isin(counts[counts < 2].index), "__rare__")
    if strata.nunique() > min(n_test, len(frame) - n_test) or strata.value_counts().min() < 2:
        return None
    return strata


def resolve_scheme(scheme: str, folds: int, data_type: str) -> str:
    """The concrete scheme for `auto`; unknown names are an error."""
    if scheme not in SCHEMES:
        raise PipesynthError(f"unknown validation scheme {scheme!r}", f"use one of {', '.join(SCHEMES)}")
    if scheme != "auto":
        return scheme
    if data_type == "time_series":
        return "time"
    return "holdout" if folds <= 1 else "kfold"


def task_groups(frame: pd.DataFrame, facts: dict[str, Any]) -> np.ndarray | None:
    """The group of every row when task.json says the task was split by group (None otherwise)."""
    split = facts.get("split") or {}
    column = split.get("group_column")
    if split.get("kind") != "group" or not column or column not in frame.columns:
        return None
    values = frame[column].astype(str)
    if split.get("group_pattern"):
        values = values.str.extract(str(split["group_pattern"]), expand=False).fillna(values)
    return values.to_numpy()


def time_order(frame: pd.DataFrame, facts: dict[str, Any]) -> np.ndarray | None:
    """Row positions oldest first when task.json says the task was split by time (None otherwise)."""
    split = facts.get("split") or {}
    columns = [c for c in split.get("time_columns") or [] if c in frame.columns]
    if split.get("kind") != "time" or not columns:
        return None
    keys = pd.DataFrame(index=frame.index)
    for col in columns:
        numbers = pd.to_numeric(frame[col], errors="coerce")
        if numbers.notna().mean() >= 0.9:
            keys[col] = numbers
            continue
        stamps = pd.to_datetime(frame[col], errors="coerce")
        keys[col] = stamps if stamps.notna().mean() >= 0.9 else frame[col]
    return np.asarray(keys.reset_index(drop=True).sort_values(columns, kind="mergesort").index)


def split_indices(
    frame: pd.DataFrame,
    facts: dict[str, Any],
    scheme: str = "auto",
    folds: int = 1,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(concrete scheme, [(train rows, held-out rows)] per fold) for the public train `frame`."""
    n = len(frame)
    folds = int(folds)
    if folds < 1:
        raise PipesynthError(f"validation folds={folds} must be >= 1", "use folds=1 (holdout) or e.g. 3")
    if not 0 < fraction < 1:
        raise PipesynthError(f"validation fraction={fraction} is not in (0, 1)", "use e.g. 0.2")
    if n < 4:
        raise PipesynthError(f"only {n} labelled public rows: too few to carve a validation split", None)
    scheme = resolve_scheme(scheme, folds, str(facts.get("data_type", "")))
    targets = [str(t) for t in facts["targets"]]
    classification = facts.get("task_type") in CLASSIFICATION
    order = np.arange(n)
    groups = task_groups(frame, facts)
    if groups is not None and len(np.unique(groups)) >= 2:
        if folds == 1:
            splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            train_idx, test_idx = next(splitter.split(order, groups=groups))
            return "group", [(np.sort(train_idx), np.sort(test_idx))]
        k = min(folds, len(np.unique(groups)))
        return "group", [
            (np.sort(a), np.sort(b)) for a, b in GroupKFold(n_splits=k).split(order, groups=groups)
        ]
    timed = time_order(frame, facts)
    if timed is not None:
        scheme, order = "time", timed
    if scheme == "time":
        if folds == 1:
            n_test = min(max(int(round(n * fraction)), 1), n - 1)
            return scheme, [(np.sort(order[: n - n_test]), np.sort(order[n - n_test :]))]
        parts = TimeSeriesSplit(n_splits=folds).split(order)
        return scheme, [(np.sort(order[tr]), np.sort(order[te])) for tr, te in parts]
    if scheme == "kfold" and folds == 1:
        scheme = "holdout"
    if scheme == "holdout":
        n_test = min(max(int(round(n * fraction)), 1), n - 1)
        strata = _strata(frame, targets, n_test) if classification else None
        train_idx, test_idx = train_test_split(order, test_size=n_test, random_state=seed, stratify=strata)
        return scheme, [(np.sort(train_idx), np.sort(test_idx))]
    strata = _strata(frame, targets, n // folds) if classification else None
    if strata is not None and strata.value_counts().min() >= folds:
        splitter: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = splitter.split(order, strata)
    else:
        parts = KFold(n_splits=folds, shuffle=True, random_state=seed).split(order)
    return scheme, [(np.sort(tr), np.sort(te)) for tr, te in parts]


def _placeholder_submission(sample: pd.DataFrame, id_col: str, ids: pd.Series) -> pd.DataFrame:
    """The public sample submission's columns and placeholder values, one row per held-out id."""
    if sample.empty:
        raise PipesynthError("public sample_submission.csv has no rows", "re-prepare the task")
    first = sample.iloc[0]
    out = pd.DataFrame({id_col: ids.to_numpy()})
    for col in sample.columns:
        if col != id_col:
            out[col] = first[col]  # the prepared sample is uninformed (constant): any row is a placeholder
    return out[list(sample.columns)]


def build_validation_split(
    public_dir: str | Path,
    out_dir: str | Path,
    scheme: str = "auto",
    folds: int = 1,
    fraction: float = 0.2,
    seed: int = 0,
    max_rows: int | None = None,
) -> list[ValidationFold]:
    """Write the validation folds of the task in `public_dir` under `out_dir` (see the module docstring).

    max_rows: subsample the public train (seeded) to at most this many rows first, to keep candidate runs quick.
    """
    public_dir, out_dir = Path(public_dir), Path(out_dir)
    facts_path = public_dir / "task.json"
    if not facts_path.is_file():
        raise PipesynthError(f"no task.json in {public_dir}", "pass the public folder of a prepared task")
    facts = json.loads(facts_path.read_text())
    id_col = str(facts["id_column"])
    targets = [str(t) for t in facts["targets"]]
    train = _read_csv(public_dir / "train.csv")
    test_columns = (
        list(_read_csv(public_dir / "test.csv").columns) if (public_dir / "test.csv").is_file() else None
    )
    sample = _read_csv(public_dir / "sample_submission.csv")
    missing = [c for c in [id_col, *targets] if c not in train.columns]
    if missing:
        raise PipesynthError(
            f"public train.csv in {public_dir} lacks column(s) {missing} named in task.json",
            "re-prepare the task (its public files and task.json disagree)",
        )
    features = [c for c in (test_columns or train.columns) if c not in (id_col, *targets)]
    if max_rows and len(train) > int(max_rows):
        keep = np.sort(np.random.default_rng(seed).choice(len(train), size=int(max_rows), replace=False))
        train = train.iloc[keep]  # keeps file order, so a time split stays a time split
    train = train.reset_index(drop=True)
    concrete, parts = split_indices(train, facts, scheme, folds, fraction, seed)

    out = []
    for i, (train_idx, test_idx) in enumerate(parts):
        root = out_dir / f"fold{i}"
        if root.exists():
            shutil.rmtree(root)
        public, private = root / "public", root / "private"
        public.mkdir(parents=True)
        private.mkdir(parents=True)
        private.chmod(0o700)
        fold_train, fold_test = train.iloc[train_idx], train.iloc[test_idx]
        fold_train.to_csv(public / "train.csv", index=False, lineterminator="\n")
        fold_test[[id_col, *features]].to_csv(public / "test.csv", index=False, lineterminator="\n")
        fold_test[[id_col, *targets]].to_csv(private / "answers.csv", index=False, lineterminator="\n")
        _placeholder_submission(sample, id_col, fold_test[id_col]).to_csv(
            public / "sample_submission.csv", index=False, lineterminator="\n"
        )
        for extra in sorted(public_dir.iterdir()):  # task.json, description.md, label-free extras
            if extra.name in _SPLIT_FILES:
                continue
            if extra.is_file():
                shutil.copyfile(extra, public / extra.name)
            elif extra.is_dir():
                shutil.copytree(extra, public / extra.name)
        prepared = PreparedTask(
            slug=str(facts.get("slug", public_dir.parent.name)),
            seed=int(seed),
            root=root,
            public_dir=public,
            private_dir=private,
            answers_path=private / "answers.csv",
            id_column=id_col,
            targets=targets,
            submission_columns=[str(c) for c in facts.get("submission_columns") or targets],
            metric=str(facts["metric"]),
            higher_is_better=bool(facts["higher_is_better"]),
            task_type=str(facts["task_type"]),
            class_labels=facts.get("class_labels"),
            n_train=len(fold_train),
            n_test=len(fold_test),
            split_method=f"validation-{concrete}",
            official_test=False,
        )
        out.append(ValidationFold(i, concrete, public, prepared, len(fold_train), len(fold_test)))
    log.debug("%s: %d validation fold(s), scheme %s", facts.get("slug"), len(out), concrete)
    return out


def check_submission_format(submission: str | Path, sample_submission: str | Path) -> str | None:
    """Why `submission` does not match the public sample submission's shape, or None when it does.

    A format check from public files only (columns, one row per test id, no empty cells) — not a score.
    """
    submission, sample_submission = Path(submission), Path(sample_submission)
    if not submission.is_file():
        return "no submission.csv was written"
    try:
        got = pd.read_csv(submission, **_READ)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return f"submission.csv does not parse as CSV: {str(err).strip()[:200]}"
    want = pd.read_csv(sample_submission, **_READ)
    if list(got.columns) != list(want.columns):
        return f"columns {list(got.columns)} are not the sample submission's {list(want.columns)}"
    id_col = str(want.columns[0])
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)} (one per test id)"
    if set(got[id_col]) != set(want[id_col]) or got[id_col].duplicated().any():
        return f"the ids in '{id_col}' are not the test ids (each exactly once)"
    empty = got.apply(lambda s: s.str.strip().str.lower().isin(("", "nan", "none", "null", "inf", "-inf")))
    if empty.to_numpy().any():
        cols = [c for c in got.columns if empty[c].any()]
        return f"empty, NaN or infinite values in column(s) {cols}"
    return None
