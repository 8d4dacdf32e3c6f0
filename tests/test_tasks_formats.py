"""Tasks that are not one CSV: JSON records, JSON lines, joined tables, per-class probabilities without a sample
submission. Each task folder is built in tmp from real dev data, prepared, run (baseline_gbdt in the sandbox)
and graded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.solutions.providers import CompilerBaseline
from src.tasks.grading import grade
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.registry import load_task

SPOOKY_FACTS = {
    "title": "Spooky (JSON)", "data_type": "text", "task_type": "multiclass_classification", "id_column": "id",
    "targets": ["author"], "metric": "multiclass_log_loss", "higher_is_better": False,
}  # fmt: skip
TITANIC_FACTS = {
    "title": "Titanic (JSON lines)", "data_type": "tabular", "task_type": "binary_classification",
    "id_column": "PassengerId", "targets": ["Survived"], "metric": "accuracy", "higher_is_better": True,
}  # fmt: skip


def _raw(kaggle_dir: Path, slug: str, name: str = "train.csv") -> pd.DataFrame:
    return pd.read_csv(kaggle_dir / slug / "raw" / name, dtype=str, keep_default_na=False)


def _folder(root: Path, slug: str, facts: dict) -> Path:
    folder = root / slug
    (folder / "raw").mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"slug": slug, **facts}))
    (folder / "description.md").write_text(f"# {facts['title']}\n")
    return folder


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _run_and_grade(prepared: PreparedTask, tmp_path: Path):  # noqa: ANN202
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        sandbox = instantiate(compose("evaluate", overrides=["name=t", "logger=none"]).sandbox)
    build = CompilerBaseline().build(prepared.public_dir, tmp_path / "build", 0)
    result = sandbox.run(build.script, prepared.public_dir, tmp_path / "work")
    assert result.status == "ok", result.message
    return grade(prepared, Path(result.workdir) / "submission.csv")


def _spooky_json(kaggle_dir: Path, root: Path) -> tuple[Path, pd.DataFrame]:
    train = _raw(kaggle_dir, "spooky-author-identification").iloc[:1500]
    folder = _folder(root, "spooky-json", SPOOKY_FACTS)

    def record(row: pd.Series, labelled: bool) -> dict:
        out = {"id": row["id"], "text": row["text"], "stats": {"chars": len(row["text"]), "words": {"n": 0}}}
        out["stats"]["words"]["n"] = len(row["text"].split())
        return {**out, "author": row["author"]} if labelled else out

    (folder / "raw" / "train.json").write_text(json.dumps([record(r, True) for _, r in train.iterrows()]))
    # Kaggle's unlabelled test: only its fields matter (they define what a solution sees); no sample submission
    (folder / "raw" / "test.json").write_text(
        json.dumps({"data": [record(r, False) for _, r in train.iloc[:5].iterrows()]})
    )
    return folder, train


def test_json_records_with_per_class_probabilities_prepare_run_and_grade(
    kaggle_dir: Path, tmp_path: Path
) -> None:
    _, train = _spooky_json(kaggle_dir, tmp_path / "data")
    task = load_task(tmp_path / "data", "spooky-json", overrides_dir=None)
    assert task.has_data  # files.train is train.csv; train.json stands in for it
    prepared = prepare_task(task, tmp_path / "cache")
    public = _read(prepared.public_dir / "train.csv")
    # nested fields flattened, long strings kept as they were, numbers with their digits
    assert list(public.columns) == ["id", "text", "stats.chars", "stats.words.n", "author"]
    raw = train.set_index("id")
    for _, row in public.iterrows():
        assert row["text"] == raw.loc[row["id"], "text"] and row["author"] == raw.loc[row["id"], "author"]
        assert row["stats.chars"] == str(len(row["text"]))
    assert max(public["text"].str.len()) > 500
    # one probability column per class, from the labels, though the download has no sample submission
    facts = json.loads((prepared.public_dir / "task.json").read_text())
    assert facts["submission_columns"] == facts["classes"] == ["EAP", "HPL", "MWS"]
    assert facts["split"]["kind"] == "stratified"
    sample = _read(prepared.public_dir / "sample_submission.csv")
    assert list(sample.columns) == ["id", "EAP", "HPL", "MWS"]
    assert grade(prepared, prepared.public_dir / "sample_submission.csv").score == pytest.approx(math.log(3))

    graded = _run_and_grade(prepared, tmp_path)
    assert graded.valid, graded.reason
    assert graded.score < math.log(3) - 0.05  # better than uniform on 300 real test rows

    # deterministic: another cache, the same bytes
    assert prepare_task(task, tmp_path / "cache-again").checksums == prepared.checksums

    # a sample submission holding only the label column gets the per-class format too
    (tmp_path / "data" / "spooky-json" / "raw" / "sample_submission.csv").write_text("id,author\nx,EAP\n")
    again = prepare_task(load_task(tmp_path / "data", "spooky-json", overrides_dir=None), tmp_path / "cache2")
    assert again.submission_columns == ["EAP", "HPL", "MWS"]


def test_json_lines_with_nested_fields_and_lists(kaggle_dir: Path, tmp_path: Path) -> None:
    train = _raw(kaggle_dir, "titanic")
    folder = _folder(tmp_path / "data", "titanic-jsonl", TITANIC_FACTS)

    def record(row: pd.Series, labelled: bool) -> dict:
        out = {
            "PassengerId": int(row["PassengerId"]),
            "Pclass": int(row["Pclass"]),
            "passenger": {"Sex": row["Sex"], "Age": float(row["Age"]) if row["Age"] else None},
            "ticket": {"Fare": float(row["Fare"]), "Embarked": row["Embarked"] or None},
            "cabins": row["Cabin"].split(),
        }
        return {**out, "Survived": int(row["Survived"])} if labelled else out

    lines = "\n".join(json.dumps(record(r, True)) for _, r in train.iterrows())
    (folder / "raw" / "train.jsonl").write_text(lines + "\n")
    (folder / "raw" / "test.jsonl").write_text(json.dumps(record(train.iloc[0], False)) + "\n")
    task = load_task(tmp_path / "data", "titanic-jsonl", overrides_dir=None)
    task.files = {**task.files, "train": "train.jsonl", "test": "test.jsonl"}
    prepared = prepare_task(task, tmp_path / "cache")
    public = _read(prepared.public_dir / "train.csv").set_index("PassengerId")
    assert list(public.columns) == [
        "Pclass", "passenger.Sex", "passenger.Age", "ticket.Fare", "ticket.Embarked", "cabins", "Survived"
    ]  # fmt: skip
    raw = train.set_index("PassengerId")
    some = public.index[:50]
    assert (public.loc[some, "passenger.Sex"] == raw.loc[some, "Sex"]).all()
    # a list is one cell holding its JSON text; null is empty
    with_cabins = [i for i in public.index if raw.loc[i, "Cabin"]]
    assert all(json.loads(public.loc[i, "cabins"]) == raw.loc[i, "Cabin"].split() for i in with_cabins)
    assert (public.loc[[i for i in public.index if not raw.loc[i, "Age"]], "passenger.Age"] == "").all()

    graded = _run_and_grade(prepared, tmp_path)
    assert graded.valid, graded.reason
    assert graded.score > 0.7  # the majority class scores about 0.62


def test_tables_joined_and_copied_as_the_override_says(kaggle_dir: Path, tmp_path: Path) -> None:
    train, test = _raw(kaggle_dir, "titanic"), _raw(kaggle_dir, "titanic", "test.csv")
    folder = _folder(tmp_path / "data", "titanic-tables", TITANIC_FACTS)
    people = ["PassengerId", "Name", "Sex", "Age", "SibSp", "Parch"]
    main = ["PassengerId", "Pclass", "Ticket", "Fare", "Cabin", "Embarked"]
    train[[*main, "Survived"]].to_csv(folder / "raw" / "train.csv", index=False)
    test[main].to_csv(folder / "raw" / "test.csv", index=False)
    pd.concat([train[people], test[people]]).to_csv(folder / "raw" / "people.csv", index=False)
    (folder / "raw" / "README.txt").write_text("people.csv: one row per passenger\n")
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    (overrides / "titanic-tables.yaml").write_text(
        "files:\n  join:\n    - {file: people.csv, key: PassengerId}\n  copy: [README.txt]\n"
    )
    task = load_task(tmp_path / "data", "titanic-tables", overrides_dir=overrides)
    prepared = prepare_task(task, tmp_path / "cache")
    public = _read(prepared.public_dir / "train.csv")
    public_test = _read(prepared.public_dir / "test.csv")
    assert list(public.columns) == [*main, *people[1:], "Survived"]
    assert list(public_test.columns) == [*main, *people[1:]]
    # every row keeps its own values through the join (and the split)
    original = train.set_index("PassengerId")
    joined = public.set_index("PassengerId")
    assert len(joined) + len(public_test) == len(train)
    for col in ("Name", "Sex", "Age", "Survived", "Fare"):
        assert (joined[col] == original.loc[joined.index, col]).all(), col
    assert (prepared.public_dir / "README.txt").is_file()
    assert grade(prepared, prepared.public_dir / "sample_submission.csv").valid

    # a table with several rows per key would duplicate rows: one clear error instead
    pd.concat([train[people], train[people].iloc[:3]]).to_csv(folder / "raw" / "people.csv", index=False)
    with pytest.raises(PipesynthError, match="several rows per"):
        prepare_task(load_task(tmp_path / "data", "titanic-tables", overrides_dir=overrides), tmp_path / "c2")
    (overrides / "titanic-tables.yaml").write_text("files:\n  join:\n    - {file: people.csv, key: Nope}\n")
    with pytest.raises(PipesynthError, match="join key"):
        prepare_task(load_task(tmp_path / "data", "titanic-tables", overrides_dir=overrides), tmp_path / "c3")


def test_unreadable_json_and_unknown_extension_are_clear_errors(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "data", "broken-json", TITANIC_FACTS)
    (folder / "raw" / "train.json").write_text('[{"PassengerId": 1, "Survived": 0}, {"PassengerId": ')
    with pytest.raises(PipesynthError, match="cannot read .*train.json"):
        prepare_task(load_task(tmp_path / "data", "broken-json", overrides_dir=None), tmp_path / "cache")
    task = load_task(tmp_path / "data", "broken-json", overrides_dir=None)
    (folder / "raw" / "train.parquet").write_bytes(b"PAR1")
    task.files = {**task.files, "train": "train.parquet"}
    with pytest.raises(PipesynthError, match="no reader for 'train.parquet'"):
        prepare_task(task, tmp_path / "cache")
