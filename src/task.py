"""Make a task folder from your own data: `python -m src.task init <dir> --train FILE --target COL`.

    python -m src.task init data/my-task --train ~/widgets.csv --target sold [--test ~/new_widgets.csv]
        [--metric rmse] [--id widget_id] [--title "Widget sales"] [--data-type tabular] [--copy]

Writes <dir>/task.json (task type and a default metric inferred from the target column, each stated on the
console so it can be changed), <dir>/description.md (to fill in: the instruction stage reads it) and
<dir>/raw/train.csv (+ raw/test.csv), linked to your files (or copied with --copy). Then prints the commands that
run pipesynth on it. The task format is docs/tasks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from src.errors import PipesynthError
from src.tasks.metrics import get_metric
from src.tasks.task import DATA_TYPES

MAX_CLASSES = 50  # a target with more distinct values than this (and numeric) is a regression target
ID_NAMES = ("id", "Id", "ID", "row_id", "index")


def infer_task_type(target: pd.Series) -> str:
    """binary / multiclass for few distinct values or text labels; regression for many numbers."""
    values = target.dropna()
    distinct = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if distinct == 2:
        return "binary_classification"
    if not numeric:
        return "multiclass_classification"
    whole = bool((values == values.round()).all())
    return (
        "multiclass_classification"
        if whole and distinct <= min(MAX_CLASSES, len(values) // 10)
        else "regression"
    )


def default_metric(task_type: str, target: pd.Series) -> str:
    """ROC AUC for a 0/1 target (the grader needs numeric answers for it), accuracy for other labels, RMSE."""
    if task_type == "binary_classification":
        labels = set(pd.Series(target.dropna().unique()).astype(str).str.lower())
        return "roc_auc" if labels <= {"0", "1", "0.0", "1.0", "true", "false"} else "accuracy"
    if task_type == "multiclass_classification":
        return "accuracy"
    return "rmse"


def _slug(folder: Path) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")
    if not slug:
        raise PipesynthError(
            f"cannot make a task name from folder '{folder}'", "name the folder like my-task"
        )
    return slug


def _place(source: Path, dest: Path, copy: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    if copy:
        shutil.copy2(source, dest)
    else:
        dest.symlink_to(source.resolve())


def init_task(
    folder: str | Path,
    train: str | Path,
    target: str,
    test: str | Path | None = None,
    metric: str | None = None,
    id_column: str | None = None,
    title: str | None = None,
    data_type: str = "tabular",
    copy: bool = False,
) -> dict[str, Any]:
    """Write the task folder; returns its task.json facts. Refuses to overwrite an existing task.json."""
    folder, train = Path(folder), Path(train)
    if not train.is_file():
        raise PipesynthError(f"training file '{train}' does not exist", "pass --train the path of your CSV")
    if test is not None and not Path(test).is_file():
        raise PipesynthError(
            f"test file '{test}' does not exist", "pass --test the path of your unlabelled CSV"
        )
    if (folder / "task.json").exists():
        raise PipesynthError(
            f"{folder / 'task.json'} exists already", "choose a new folder, or edit that file"
        )
    if data_type not in DATA_TYPES:
        raise PipesynthError(f"unknown data type {data_type!r}", f"use one of: {', '.join(DATA_TYPES)}")
    frame = pd.read_csv(train)
    if target not in frame.columns:
        raise PipesynthError(
            f"target column '{target}' is not in {train}",
            f"use one of its columns: {list(frame.columns)[:20]}",
        )
    if id_column is None:
        id_column = next((c for c in ID_NAMES if c in frame.columns and frame[c].is_unique), None)
    elif id_column not in frame.columns:
        raise PipesynthError(
            f"id column '{id_column}' is not in {train}", "pass --id one of its columns, or omit it"
        )
    task_type = infer_task_type(frame[target])
    metric = metric or default_metric(task_type, frame[target])
    higher = get_metric(metric).higher_is_better
    facts = {
        "slug": _slug(folder),
        "title": title or folder.name.replace("-", " ").replace("_", " ").title(),
        "data_type": data_type,
        "task_type": task_type,
        "id_column": id_column,
        "targets": [target],
        "metric": metric,
        "higher_is_better": higher,
    }
    _place(train, folder / "raw" / "train.csv", copy)
    if test is not None:
        _place(Path(test), folder / "raw" / "test.csv", copy)
    (folder / "task.json").write_text(json.dumps(facts, indent=2) + "\n")
    description = folder / "description.md"
    if not description.exists():
        description.write_text(
            f"# {facts['title']}\n\nPredict `{target}` for each row"
            + (f" (identified by `{id_column}`)" if id_column else "")
            + f". Submissions are graded by {metric}.\n\n"
            "<!-- Describe the data and what the target means: the instruction stage reads this text. -->\n"
        )
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.task",
        description="Make a pipesynth task folder from your own data (docs/tasks.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="write <dir>/task.json, description.md and raw/ from your files")
    init.add_argument("dir", help="the task folder to create (its name becomes the task's slug)")
    init.add_argument("--train", required=True, help="labelled CSV (becomes raw/train.csv)")
    init.add_argument("--test", help="unlabelled CSV to predict (raw/test.csv; used by mode=predict)")
    init.add_argument("--target", required=True, help="the column to predict")
    init.add_argument("--metric", help="a metric name (docs/tasks.md); default: inferred from the target")
    init.add_argument("--id", dest="id_column", help="row id column (default: a unique column named id)")
    init.add_argument("--title", help="the task's title (default: from the folder name)")
    init.add_argument("--data-type", default="tabular", choices=DATA_TYPES)
    init.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    args = parser.parse_args(argv)
    try:
        facts = init_task(
            args.dir, args.train, args.target, args.test, args.metric, args.id_column, args.title,
            args.data_type, args.copy,
        )  # fmt: skip
    except PipesynthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.dir).resolve()
    print(
        f"wrote {folder}/task.json: {facts['task_type']}, metric {facts['metric']}, target {facts['targets'][0]}"
    )
    print(
        f"  (task type and metric were inferred: edit task.json to change them; describe the task in {folder}/description.md)"
    )
    print("run it:")
    print(f"  python -m src.generate task={folder}")
    if args.test:
        print(
            f"  python -m src.generate task={folder} mode=predict        # fit on all rows, predict raw/test.csv"
        )
    print(f"  python -m src.evaluate paths.data_dir={folder.parent} tasks={facts['slug']} solution=generate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
