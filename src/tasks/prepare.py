"""Prepare a task: carve public train/test files and private answers out of the raw competition files.

    from src.tasks.prepare import prepare_task
    prepared = prepare_task(task, cache_dir=".cache", seed=0)

Writes `<cache_dir>/tasks/<slug>/seed<seed>/`:
  public/   train.csv (id, features, targets), test.csv (id, features), sample_submission.csv, task.json
            (public facts only), description.md, plus label-free extras named in `files.copy`
  private/  answers.csv (id + target columns) — never copied into a sandbox
  manifest.json  inputs' fingerprint, split, row counts and the sha256 of every output file

Deterministic: the same raw files, config and seed give byte-identical outputs. Idempotent: a second call
whose fingerprint matches and whose outputs still verify returns the cached result without writing.

Leak rules: public files keep only the columns Kaggle's own test has (plus the targets in train), so extra
labels such as bike-sharing's casual/registered never reach a solution; every row is read as text and written
back unchanged, so no value is altered on the way. The split is a `_target_` object from config
(src/tasks/splits.py); public task.json says which (`split`: kind, group_column, time_columns) so inner
validation can mirror it. Raw tables are read through src/tasks/readers.py; public files are always CSV. The
cache (manifest, fingerprint) is src/tasks/cache.py. A
metric scored on one probability column per class gets those columns (named by label, listed as `classes`)
even when the download has no sample submission.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from hydra.utils import instantiate

from src.errors import PipesynthError
from src.tasks.cache import PreparedTask, cached_preparation, task_fingerprint
from src.tasks.metrics import get_metric
from src.tasks.readers import (
    copy_raw,
    find_sample_submission,
    raw_reader,
    read_source,
    sha256_file,
    table_reader,
)
from src.tasks.splits import OfficialTestSplit, default_time_split
from src.tasks.task import Task, find_raw_file

log = logging.getLogger(__name__)

SYNTHETIC_ID = "id"


def typed_label(text: str) -> Any:
    """A label as JSON would hold it: "1" -> 1, "TRUE"/"True" -> True, "2.5" -> 2.5, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
        return int(value) if value.is_integer() else value
    except ValueError:
        return text


def _label_text(label: Any) -> str:
    """A label as a column name: the text typed_label reads back as the same label."""
    return json.dumps(label) if isinstance(label, bool) else str(label)


def _sorted_labels(values: pd.Series) -> list[Any]:
    labels = {typed_label(v): None for v in values.unique()}
    return sorted(labels, key=lambda v: (type(v).__name__, v))


def prepare_task(task: Task, cache_dir: str | Path, seed: int = 0, predict: bool = False) -> PreparedTask:
    """Prepare `task` under `<cache_dir>/tasks/<slug>/seed<seed>/` (cached; rebuilt when inputs change).

    predict: the public train is every labelled row and the test is the task's own unlabelled test file
    (files.test, raw/test.csv by default), under `<slug>/predict/`; there are no answers to grade.
    """
    task.require_data()
    root = Path(cache_dir) / "tasks" / task.slug / f"seed{seed}"
    if predict:
        test_name = str(task.files.get("test") or "")
        if not test_name or find_raw_file(task, test_name) is None:
            raise PipesynthError(
                f"mode=predict needs task '{task.slug}''s unlabelled test file ({test_name or 'files.test'} in "
                f"{task.raw_dir})",
                "put the rows to predict there as test.csv (`python -m src.task init ... --test FILE` links it)",
            )
        task = replace(
            task,
            split={
                "_target_": "src.tasks.splits.PredictionSplit",
                "_recursive_": False,  # evaluation_split stays a config
                "test_file": test_name,
                "evaluation_split": task.split,
            },
        )
        root = root.parent / "predict"
    fingerprint = task_fingerprint(task, seed)
    cached = cached_preparation(root, fingerprint)
    if cached is not None:
        return cached

    root.parent.mkdir(parents=True, exist_ok=True)
    # one preparer at a time per task and seed (launcher jobs, test workers): the others wait, then find it cached
    # instead of swapping a second copy in under a reader
    with FileLock(str(root.parent / f".{root.name}.lock")):
        cached = cached_preparation(root, fingerprint)
        if cached is not None:
            return cached
        # build beside the target, then swap it in, so a reader never sees a half-written preparation
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            facts = _build(task, seed, tmp, fingerprint)
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            if root.exists():
                root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "prepared %s (seed %d): %d train / %d test rows", task.slug, seed, facts["n_train"], facts["n_test"]
    )
    return PreparedTask.from_manifest(root / "manifest.json")


def _build(task: Task, seed: int, out: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    read_raw = raw_reader(task)
    read_table = table_reader(task)
    metric = get_metric(task.metric)
    labelled = read_table(task.files["train"])
    where = f"task '{task.slug}' ({task.raw_dir / task.files['train']})"
    missing = [c for c in [*task.targets, *([task.id_column] if task.id_column else [])] if c not in labelled]
    if missing:
        raise PipesynthError(
            f"{where} has no column(s) {missing}", "fix id_column/targets in task.json or files.train"
        )

    # rows without a label cannot be graded (e.g. the rows to impute in an imputation competition)
    unlabelled = (labelled[task.targets].apply(lambda s: s.str.strip()) == "").any(axis=1)
    labelled = labelled.loc[~unlabelled]

    id_col = task.id_column or (SYNTHETIC_ID if SYNTHETIC_ID not in labelled.columns else "row_id")
    synthetic_id = task.id_column is None

    # features: the columns of Kaggle's own (unlabelled) test file, which defines what a solution may see
    test_name = task.files.get("test")
    if test_name and find_raw_file(task, str(test_name)) is not None:
        source = find_raw_file(task, str(test_name))
        assert source is not None
        header = list(
            read_table(str(test_name)).columns
            if task.files.get("join")
            else read_source(task, source, nrows=0).columns
        )
        features = [c for c in header if c != id_col]
        absent = [c for c in features if c not in labelled.columns]
        if absent:
            raise PipesynthError(
                f"{where}: test file {test_name} has column(s) {absent} that the training file lacks",
                f"check files.train/files.test in conf/task_overrides/{task.slug}.yaml",
            )
    else:
        features = [c for c in labelled.columns if c not in (id_col, *task.targets)]
    dropped = [c for c in labelled.columns if c not in (id_col, *features, *task.targets)]

    description = task.description_path.read_text(errors="replace") if task.description_path.is_file() else ""
    split_cfg = task.split
    predicting = "evaluation_split" in split_cfg  # predict mode: the evaluation split still guides validation
    evaluation = replace(task, split=split_cfg["evaluation_split"]) if predicting else task
    by_time = default_time_split(evaluation, labelled, description)
    if by_time is not None:  # a forecasting task: the test is the latest period, as the competition's
        log.info("%s: forecasting task, split by time on %s", task.slug, by_time["time_columns"])
        split_cfg = {**split_cfg, "evaluation_split": by_time} if predicting else by_time
    try:
        splitter = instantiate(split_cfg)
    except Exception as err:  # a bad _target_ or argument: say which config to fix, not a Hydra traceback
        raise PipesynthError(
            f"task '{task.slug}': cannot build its splitter from {task.split} ({err})",
            f"fix `split` in conf/task_overrides/{task.slug}.yaml or in the suite config",
        ) from None
    train, test = splitter.split(labelled, task, seed, read_table)
    absent = [c for c in features if c not in test.columns]
    if absent:
        raise PipesynthError(
            f"{where}: the labelled test lacks feature column(s) {absent}", "check the split"
        )
    if not getattr(splitter, "unlabelled_test", False):  # predict mode: every test row is to be predicted
        test = test.loc[(test[task.targets].apply(lambda s: s.str.strip()) != "").all(axis=1)]
    train, test = train.copy(), test.copy()
    if synthetic_id:
        # the competition had no id: number the rows, test after train, so ids are disjoint by construction
        train.insert(0, id_col, [str(i) for i in range(len(train))])
        test.insert(0, id_col, [str(len(train) + i) for i in range(len(test))])
    for name, part in (("train", train), ("test", test)):
        if part[id_col].duplicated().any():
            raise PipesynthError(
                f"{where}: id column '{id_col}' has duplicate values in the {name} part",
                "set id_column to a unique column (or null to number the rows)",
            )
    if set(train[id_col]) & set(test[id_col]):
        raise PipesynthError(f"{where}: train and test share ids", "the official test must be disjoint")

    # submission columns: Kaggle's sample submission where there is one, else the targets
    sample_name = find_sample_submission(task)
    class_labels = _sorted_labels(labelled[task.targets].stack()) if task.is_classification else None
    per_class = metric.per_class and len(task.targets) == 1 and class_labels is not None
    submission_columns = list(task.targets)
    if sample_name:
        sample_cols = list(read_raw(sample_name).columns)
        submission_columns = [c for c in sample_cols if c not in (id_col, task.id_column)]
    if per_class and submission_columns == list(task.targets):
        # no sample submission (or one with just the label column), but the metric scores one probability
        # column per class: name them by label, in the labels' sorted order
        submission_columns = [_label_text(label) for label in class_labels or []]

    if set(submission_columns) != set(task.targets):
        # the only other shape allowed: one probability column per class of a single target (log loss)
        if not (
            per_class
            and class_labels is not None
            and {typed_label(c) for c in submission_columns} == set(class_labels)
        ):
            raise PipesynthError(
                f"{where}: sample submission columns {submission_columns} are neither the targets "
                f"{task.targets} nor the class labels {class_labels}",
                f"set files.sample_submission in conf/task_overrides/{task.slug}.yaml or fix targets in task.json",
            )
        class_labels = list(submission_columns)  # the order the submission's columns come in

    public, private = out / "public", out / "private"
    public.mkdir(parents=True)
    private.mkdir(parents=True)
    os.chmod(private, 0o700)  # defence in depth: the sandbox runs as another user and must not read this

    train[[id_col, *features, *task.targets]].to_csv(public / "train.csv", index=False, lineterminator="\n")
    test[[id_col, *features]].to_csv(public / "test.csv", index=False, lineterminator="\n")
    test[[id_col, *task.targets]].to_csv(private / "answers.csv", index=False, lineterminator="\n")
    _sample_submission(train, test, id_col, task, metric.prediction, submission_columns).to_csv(
        public / "sample_submission.csv", index=False, lineterminator="\n"
    )
    if task.description_path.is_file():
        shutil.copyfile(task.description_path, public / "description.md")
    else:
        (public / "description.md").write_text(f"# {task.title}\n")
    for name in task.files.get("copy") or []:
        source = find_raw_file(task, str(name))
        if source is None:
            raise PipesynthError(
                f"task '{task.slug}': file {name} to copy is not in {task.raw_dir}",
                f"fix files.copy in conf/task_overrides/{task.slug}.yaml",
            )
        copy_raw(source, public / Path(str(name)).name)

    public_facts: dict[str, Any] = {
        "slug": task.slug,
        "title": task.title,
        "data_type": task.data_type,
        "task_type": task.task_type,
        "id_column": id_col,
        "targets": task.targets,
        "submission_columns": submission_columns,
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
    }
    if class_labels is not None:
        public_facts["class_labels"] = class_labels
    if set(submission_columns) != set(task.targets):
        public_facts["classes"] = class_labels  # one probability column per class, in submission order
    public_facts["split"] = splitter.facts(task)
    (public / "task.json").write_text(json.dumps(public_facts, indent=2) + "\n")

    facts = {
        **{k: public_facts[k] for k in ("id_column", "targets", "submission_columns", "metric")},
        "higher_is_better": metric.higher_is_better,
        "task_type": task.task_type,
        "class_labels": class_labels,
        "n_train": len(train),
        "n_test": len(test),
        "split_method": splitter.name,
        "official_test": isinstance(splitter, OfficialTestSplit),
    }
    files = {
        str(p.relative_to(out)): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.parent != out
    }
    manifest = {
        "slug": task.slug,
        "seed": seed,
        **facts,
        "synthetic_id": synthetic_id,
        "dropped_columns": dropped,
        "dropped_unlabelled_rows": int(unlabelled.sum()),
        "split": public_facts["split"],
        "fingerprint": fingerprint,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return facts


def _sample_submission(
    train: pd.DataFrame, test: pd.DataFrame, id_col: str, task: Task, prediction: str, columns: list[str]
) -> pd.DataFrame:
    """A valid, uninformed submission: uniform probabilities, 0.5 scores, a label, the most frequent labels
    (ranking) or the training median."""
    sample = pd.DataFrame({id_col: test[id_col].to_numpy()})
    for col in columns:
        if col not in task.targets:  # a class probability column
            sample[col] = 1.0 / len(columns)
        elif prediction == "probability":
            sample[col] = 0.5
        elif prediction == "label":
            sample[col] = sorted(train[col].unique())[0]
        elif prediction == "ranking":  # MAP@k: the k most frequent training labels, best first
            top = train[col].astype(str).value_counts().index[: int(get_metric(task.metric).k or 1)]
            sample[col] = " ".join(top)
        else:
            sample[col] = round(float(pd.to_numeric(train[col]).median()), 8)  # round: no 1.91334999..
    return sample


def prepared_summary(prepared: PreparedTask) -> dict[str, Any]:
    """The manifest's facts as a plain dict (for logs and reports)."""
    data = asdict(prepared)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items() if k != "checksums"}
