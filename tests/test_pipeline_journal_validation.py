"""The generation journal (nodes, parents, JSON round trip, best by the metric's direction) and the validation
split carved from the public train (leak-free folds that grade like a prepared task)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from src.errors import PipesynthError
from src.pipeline.journal import Journal
from src.pipeline.validation import build_validation_split, check_submission_format
from src.tasks import grade, load_task, prepare_task


def test_journal_round_trip_lineage_and_best_by_direction(tmp_path: Path) -> None:
    journal = Journal("house-prices", "rmse_log", higher_is_better=False)
    first = journal.add("instruction", rank=1, instruction="Data preprocessing: ...").finish("malformed")
    second = journal.add("instruction", parent=first, rank=1, attempt=1, instruction="x").finish("ok")
    code = journal.add("code", parent=second, code="print(1)").finish("error", validation_score=None)
    fixed = journal.add("repair", parent=code, code="print(2)").finish("ok", validation_score=0.20)
    other = journal.add("code", parent=first, code="print(3)").finish("ok", validation_score=0.15)
    journal.add("code", parent=first, code="print(3)").finish("duplicate", validation_score=0.15)
    assert journal.best() is other  # lower is better for rmse_log
    assert [n.id for n in journal.lineage(fixed)] == [first.id, second.id, code.id, fixed.id]
    assert journal.children(first) == [second, other, journal.nodes[-1]]
    journal.choose(other)

    path = journal.save(tmp_path / "journal.json")
    data = json.loads(path.read_text())
    assert data["chosen"] == other.id and data["summary"]["code"] == {"error": 1, "ok": 1, "duplicate": 1}
    again = Journal.load(path)
    assert [n.to_dict() for n in again.nodes] == [n.to_dict() for n in journal.nodes]
    assert again.chosen == other.id and again.best().id == other.id
    assert not again.higher_is_better

    flipped = Journal("titanic", "accuracy", higher_is_better=True, nodes=journal.nodes)
    assert flipped.best().id == fixed.id  # same scores, the other direction
    with pytest.raises(KeyError):
        journal.add("code", parent="no-such-node")
    with pytest.raises(ValueError):
        journal.add("deploy")


@pytest.fixture(scope="module")
def prepared(kaggle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {
        slug: prepare_task(load_task(kaggle_dir, slug), cache, seed=0)
        for slug in ("titanic", "bike-sharing-demand", "spooky-author-identification")
    }


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_holdout_fold_is_carved_from_public_train_only(prepared: dict, tmp_path: Path) -> None:
    task = prepared["titanic"]
    # the builder gets a copy of public/ alone: nothing private exists beside it
    public = Path(shutil.copytree(task.public_dir, tmp_path / "only" / "public"))
    [fold] = build_validation_split(public, tmp_path / "val", folds=1, fraction=0.25, seed=3)
    public_train = _read(task.public_dir / "train.csv")
    train, test = _read(fold.public_dir / "train.csv"), _read(fold.public_dir / "test.csv")
    answers = _read(fold.prepared.answers_path)
    assert fold.scheme == "holdout" and fold.n_test == round(len(public_train) * 0.25)
    assert list(train.columns) == list(public_train.columns)
    assert list(test.columns) == list(_read(task.public_dir / "test.csv").columns)  # features only
    assert list(answers.columns) == ["PassengerId", "Survived"]
    ids = set(public_train.PassengerId)
    assert set(train.PassengerId) | set(test.PassengerId) == ids
    assert not set(train.PassengerId) & set(test.PassengerId)
    assert list(answers.PassengerId) == list(test.PassengerId)
    # the held-out labels are the public train's own, byte for byte; stratified by label
    truth = public_train.set_index("PassengerId").Survived
    assert (answers.set_index("PassengerId").Survived == truth.loc[answers.PassengerId]).all()
    assert abs(answers.Survived.astype(int).mean() - truth.astype(int).mean()) < 0.02
    sample = _read(fold.public_dir / "sample_submission.csv")
    assert list(sample.columns) == list(_read(task.public_dir / "sample_submission.csv").columns)
    assert list(sample.PassengerId) == list(test.PassengerId)
    for name in ("task.json", "description.md"):
        assert (fold.public_dir / name).read_bytes() == (task.public_dir / name).read_bytes()
    # the fold grades like a prepared task: the held-out truth scores perfectly, the placeholder is valid
    perfect = tmp_path / "perfect.csv"
    answers.to_csv(perfect, index=False)
    assert grade(fold.prepared, perfect).score == 1.0
    placeholder = grade(fold.prepared, fold.public_dir / "sample_submission.csv")
    assert placeholder.valid and placeholder.score < 1.0
    # same seed, same fold; another seed, another fold
    [again] = build_validation_split(task.public_dir, tmp_path / "again", folds=1, fraction=0.25, seed=3)
    [other] = build_validation_split(task.public_dir, tmp_path / "other", folds=1, fraction=0.25, seed=4)
    assert _read(again.public_dir / "test.csv").equals(test)
    assert not _read(other.public_dir / "test.csv").equals(test)


def test_kfold_covers_every_row_once_and_time_series_holds_out_the_end(
    prepared: dict, tmp_path: Path
) -> None:
    task = prepared["spooky-author-identification"]
    folds = build_validation_split(
        task.public_dir, tmp_path / "k", scheme="auto", folds=3, seed=0, max_rows=900
    )
    assert [f.scheme for f in folds] == ["kfold"] * 3
    held = [set(_read(f.public_dir / "test.csv").id) for f in folds]
    assert sum(len(h) for h in held) == 900 and len(set().union(*held)) == 900
    # one probability column per author, like the public sample submission
    sample = _read(folds[0].public_dir / "sample_submission.csv")
    assert list(sample.columns) == ["id", "EAP", "HPL", "MWS"]

    bikes = prepared["bike-sharing-demand"]
    [fold] = build_validation_split(bikes.public_dir, tmp_path / "t", scheme="auto", folds=1, fraction=0.2)
    assert fold.scheme == "time"
    train_times = pd.to_datetime(_read(fold.public_dir / "train.csv").datetime)
    test_times = pd.to_datetime(_read(fold.public_dir / "test.csv").datetime)
    assert train_times.max() < test_times.min()


def test_format_check_and_clear_errors(prepared: dict, tmp_path: Path) -> None:
    public = prepared["titanic"].public_dir
    sample = public / "sample_submission.csv"
    assert check_submission_format(sample, sample) is None
    frame = _read(sample)
    frame.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    assert "rows" in check_submission_format(tmp_path / "short.csv", sample)
    frame.rename(columns={"Survived": "survived"}).to_csv(tmp_path / "cols.csv", index=False)
    assert "columns" in check_submission_format(tmp_path / "cols.csv", sample)
    frame.assign(Survived="").to_csv(tmp_path / "empty.csv", index=False)
    assert "empty" in check_submission_format(tmp_path / "empty.csv", sample)
    assert "no submission" in check_submission_format(tmp_path / "missing.csv", sample)
    with pytest.raises(PipesynthError, match="unknown validation scheme"):
        build_validation_split(public, tmp_path / "x", scheme="bootstrap")
    with pytest.raises(PipesynthError, match="no task.json"):
        build_validation_split(tmp_path, tmp_path / "y")
