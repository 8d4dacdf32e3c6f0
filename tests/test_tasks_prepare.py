"""prepare_task on the nine real dev tasks: deterministic, idempotent, leak-free, faithful to each task."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import src.tasks.prepare as prepare_module
from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.registry import Task, load_suite, load_task

PUBLIC_FACTS = {
    "slug", "title", "data_type", "task_type", "id_column", "targets", "submission_columns", "metric",
    "higher_is_better", "split",
}  # fmt: skip


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _suite(name: str, kaggle_dir: Path) -> list[Task]:
    # the suite group alone, as the entry points compose it (conf/suite/<name>.yaml)
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(overrides=[f"+suite={name}"])
    return load_suite(cfg.suite, kaggle_dir)


def _dev_suite(kaggle_dir: Path) -> list[Task]:
    return _suite("dev", kaggle_dir)


@pytest.fixture(scope="session")
def dev_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one cache per test session, shared by the task test files (a second prepare is a cache hit)
    return tmp_path_factory.getbasetemp() / "tasks_cache"


@pytest.fixture(scope="module")
def dev(kaggle_dir: Path, dev_cache: Path) -> dict[str, tuple[Task, PreparedTask]]:
    return {task.slug: (task, prepare_task(task, dev_cache, seed=0)) for task in _dev_suite(kaggle_dir)}


def test_dev_suite_is_the_nine_tasks_with_data(kaggle_dir: Path) -> None:
    tasks = _dev_suite(kaggle_dir)
    assert len(tasks) == 9
    assert all(t.has_data for t in tasks)
    with_raw = {p.parent.name for p in kaggle_dir.glob("*/raw")}
    assert {t.slug for t in tasks} == with_raw


def test_layout_and_public_task_json(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    for slug, (task, prep) in dev.items():
        assert prep.root.name == "seed0" and prep.root.parent.name == slug
        for name in ("train.csv", "test.csv", "sample_submission.csv", "task.json", "description.md"):
            assert (prep.public_dir / name).is_file(), (slug, name)
        assert prep.answers_path == prep.private_dir / "answers.csv" and prep.answers_path.is_file()
        facts = json.loads((prep.public_dir / "task.json").read_text())
        assert PUBLIC_FACTS <= set(facts), slug
        assert facts["id_column"], slug  # never null
        assert facts["metric"] == task.metric and facts["higher_is_better"] == task.higher_is_better
        assert ("class_labels" in facts) == task.is_classification, slug
        # nothing private or raw-specific in the public facts
        assert not {"teams", "leaderboard_source", "note", "notes"} & set(facts), slug


def test_no_answer_reaches_a_public_file(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    for slug, (task, prep) in dev.items():
        answers = _read(prep.answers_path)
        train, test = _read(prep.public_dir / "train.csv"), _read(prep.public_dir / "test.csv")
        sample = _read(prep.public_dir / "sample_submission.csv")
        id_col = prep.id_column
        assert list(answers.columns) == [id_col, *task.targets], slug
        # the test has no target, no submission column and nothing train lacks
        assert not set(test.columns) & {*task.targets, *prep.submission_columns}, slug
        assert set(test.columns) <= set(train.columns), slug
        manifest = json.loads(prep.manifest_path.read_text())
        for dropped in manifest["dropped_columns"]:  # e.g. casual/registered, EC3..EC6
            for name in ("train.csv", "test.csv", "sample_submission.csv"):
                assert dropped not in _read(prep.public_dir / name).columns, (slug, dropped, name)
        # ids: answers == test == sample submission, disjoint from train, unique
        assert answers[id_col].tolist() == test[id_col].tolist() == sample[id_col].tolist(), slug
        assert test[id_col].is_unique and train[id_col].is_unique, slug
        assert not set(train[id_col]) & set(test[id_col]), slug
        assert list(sample.columns) == [id_col, *prep.submission_columns], slug
        assert len(train) == prep.n_train and len(test) == prep.n_test, slug


def test_private_folder_is_closed(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    _, prep = dev["titanic"]
    assert oct(prep.private_dir.stat().st_mode & 0o777) == "0o700"


def test_split_sizes_follow_the_config(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    for slug, (task, prep) in dev.items():
        total = prep.n_train + prep.n_test
        if slug == "detecting-insults-in-social-commentary":
            continue
        frac = task.split["test_fraction"]
        assert abs(prep.n_test - total * frac) <= 0.02 * total + 1, (slug, prep.n_test, total)


def test_bike_sharing_is_split_in_time_without_extra_labels(
    dev: dict[str, tuple[Task, PreparedTask]],
) -> None:
    _, prep = dev["bike-sharing-demand"]
    assert prep.split_method == "time"
    train = pd.to_datetime(_read(prep.public_dir / "train.csv")["datetime"])
    test = pd.to_datetime(_read(prep.public_dir / "test.csv")["datetime"])
    assert train.max() < test.min()  # every test hour is after every train hour: the last part of the period
    for name in ("train.csv", "test.csv"):
        columns = set(_read(prep.public_dir / name).columns)
        assert not {"casual", "registered"} & columns
    assert json.loads(prep.manifest_path.read_text())["dropped_columns"] == ["casual", "registered"]


def test_detecting_insults_uses_the_official_labelled_test(
    dev: dict[str, tuple[Task, PreparedTask]], kaggle_dir: Path
) -> None:
    task, prep = dev["detecting-insults-in-social-commentary"]
    raw = kaggle_dir / task.slug / "raw"
    raw_train, official = _read(raw / "train.csv"), _read(raw / "test_with_solutions.csv")
    assert prep.official_test and prep.split_method == "official_test"
    assert prep.id_column == "id"  # the competition had none: a synthetic one
    train, test = _read(prep.public_dir / "train.csv"), _read(prep.public_dir / "test.csv")
    answers = _read(prep.answers_path)
    assert len(train) == len(raw_train) and len(test) == len(official)
    assert train["Comment"].tolist() == raw_train["Comment"].tolist()
    assert test["Comment"].tolist() == official["Comment"].tolist()
    assert answers["Insult"].tolist() == official["Insult"].tolist()
    assert list(test.columns) == ["id", "Date", "Comment"]


def test_task_specific_shapes(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    spooky = dev["spooky-author-identification"][1]
    assert spooky.submission_columns == ["EAP", "HPL", "MWS"] == spooky.class_labels
    sample = _read(spooky.public_dir / "sample_submission.csv")
    assert sample[["EAP", "HPL", "MWS"]].astype(float).sum(axis=1).round(9).eq(1).all()

    enzymes = dev["playground-series-s3e18"][1]
    assert enzymes.targets == enzymes.submission_columns == ["EC1", "EC2"]
    train_cols = set(_read(enzymes.public_dir / "train.csv").columns)
    assert {"EC1", "EC2"} <= train_cols and not {"EC3", "EC4", "EC5", "EC6"} & train_cols

    nomad = dev["nomad2018-predict-transparent-conductors"][1]
    assert nomad.submission_columns == ["formation_energy_ev_natom", "bandgap_energy_ev"]
    house = dev["house-prices-advanced-regression-techniques"][1]
    assert house.submission_columns == ["SalePrice"] and house.metric == "rmse_log"
    assert (house.public_dir / "data_description.txt").is_file()

    spaceship = dev["spaceship-titanic"][1]
    assert spaceship.split_method == "group" and spaceship.class_labels == [False, True]
    group = lambda frame: set(frame["PassengerId"].str.split("_").str[0])  # noqa: E731
    assert not group(_read(spaceship.public_dir / "train.csv")) & group(_read(spaceship.answers_path))


def test_classification_splits_are_stratified(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    for slug in ("titanic", "playground-series-s3e22", "spooky-author-identification"):
        task, prep = dev[slug]
        assert prep.split_method == "stratified"
        target = task.targets[0]
        train = _read(prep.public_dir / "train.csv")[target].value_counts(normalize=True)
        test = _read(prep.answers_path)[target].value_counts(normalize=True)
        assert (train - test).abs().max() < 0.01, slug


def test_prepare_is_deterministic(dev: dict[str, tuple[Task, PreparedTask]], tmp_path: Path) -> None:
    for slug in ("titanic", "bike-sharing-demand", "spooky-author-identification", "spaceship-titanic"):
        task, prep = dev[slug]
        again = prepare_task(task, tmp_path / "other_cache", seed=0)
        assert again.checksums == prep.checksums, slug
        for rel in prep.checksums:
            assert (again.root / rel).read_bytes() == (prep.root / rel).read_bytes(), (slug, rel)


def test_seed_changes_the_split(dev: dict[str, tuple[Task, PreparedTask]], tmp_path: Path) -> None:
    task, prep = dev["titanic"]
    other = prepare_task(task, tmp_path, seed=1)
    assert other.root.name == "seed1"
    assert (
        _read(other.answers_path)["PassengerId"].tolist() != _read(prep.answers_path)["PassengerId"].tolist()
    )
    # a time split has one answer whatever the seed
    bike, bike_prep = dev["bike-sharing-demand"]
    assert prepare_task(bike, tmp_path, seed=1).checksums == bike_prep.checksums


def test_prepare_is_idempotent_and_repairs_tampering(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    task, prep = dev["playground-series-s3e22"]
    files = [prep.root / rel for rel in prep.checksums] + [prep.manifest_path]
    before = {f: f.stat().st_mtime_ns for f in files}
    again = prepare_task(task, prep.root.parent.parent.parent, seed=0)
    assert again.checksums == prep.checksums
    assert {f: f.stat().st_mtime_ns for f in files} == before  # nothing rewritten
    # a changed or deleted output is detected and the preparation rebuilt
    os.chmod(prep.answers_path, 0o600)
    prep.answers_path.write_text("id,outcome\n1,lived\n")
    (prep.public_dir / "test.csv").unlink()
    rebuilt = prepare_task(task, prep.root.parent.parent.parent, seed=0)
    assert rebuilt.checksums == prep.checksums
    assert len(_read(rebuilt.answers_path)) == prep.n_test


def test_config_change_rebuilds(dev: dict[str, tuple[Task, PreparedTask]], tmp_path: Path) -> None:
    task, prep = dev["playground-series-s3e22"]
    total = prep.n_train + prep.n_test
    capped = load_task(
        task.root.parent, task.slug, split_defaults={"test_fraction": 0.2, "max_test_rows": 100}
    )
    small = prepare_task(capped, tmp_path, seed=0)
    assert small.n_test == 100 and small.n_train == total - 100
    bigger = load_task(
        task.root.parent, task.slug, split_defaults={"test_fraction": 0.1, "max_test_rows": None}
    )
    rebuilt = prepare_task(bigger, tmp_path, seed=0)  # same folder, new fingerprint: prepared again
    assert rebuilt.root == small.root and rebuilt.n_test == round(0.1 * total)


def _fake_task(root: Path, slug: str, facts: dict, files: dict[str, str]) -> Path:
    folder = root / slug
    (folder / "raw").mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"slug": slug, **facts}))
    (folder / "description.md").write_text(f"# {slug}\n")
    for name, text in files.items():
        (folder / "raw" / name).write_text(text)
    return folder


def test_kaggle_zip_is_read_in_place(kaggle_dir: Path, tmp_path: Path) -> None:
    # a user's `kaggle competitions download` leaves <slug>.zip in raw/: no unzipping needed
    folder = tmp_path / "data" / "titanic"
    shutil.copytree(kaggle_dir / "titanic", folder, ignore=shutil.ignore_patterns("raw"))
    (folder / "raw").mkdir()
    with zipfile.ZipFile(folder / "raw" / "titanic.zip", "w") as zf:
        for path in (kaggle_dir / "titanic" / "raw").iterdir():
            zf.write(path, path.name)
    task = load_task(tmp_path / "data", "titanic")
    assert task.has_data
    zipped = prepare_task(task, tmp_path / "cache", seed=0)
    plain = prepare_task(load_task(kaggle_dir, "titanic"), tmp_path / "cache2", seed=0)
    assert zipped.checksums == plain.checksums


def test_unlabelled_rows_are_dropped_and_features_come_from_train(tmp_path: Path) -> None:
    # an imputation task: one data.csv whose empty-target rows are Kaggle's test
    rows = "\n".join(f"{i},{i % 7},{'' if i % 5 == 0 else i * 0.1}" for i in range(100))
    _fake_task(
        tmp_path,
        "impute",
        {"title": "t", "data_type": "tabular", "task_type": "regression", "id_column": "id",
         "targets": ["x_e_out [-]"], "metric": "rmse", "higher_is_better": False},
        {"data.csv": "id,feat,x_e_out [-]\n" + rows + "\n"},
    )  # fmt: skip
    task = load_task(tmp_path, "impute")
    task.files = {**task.files, "train": "data.csv", "test": None}
    prep = prepare_task(task, tmp_path / "cache")
    assert prep.n_train + prep.n_test == 80
    assert list(_read(prep.public_dir / "test.csv").columns) == ["id", "feat"]
    assert json.loads(prep.manifest_path.read_text())["dropped_unlabelled_rows"] == 20


def test_paper_task_without_data_names_folder_and_download_command(kaggle_dir: Path, tmp_path: Path) -> None:
    tasks = _suite("paper", kaggle_dir)
    assert [t.slug for t in tasks] == [
        "playground-series-s3e15", "playground-series-s3e17", "playground-series-s3e20",
        "playground-series-s3e4", "commonlit-evaluate-student-summaries",
    ]  # fmt: skip
    for task in tasks:
        assert not task.has_data
        with pytest.raises(PipesynthError) as err:
            prepare_task(task, tmp_path)
        message = str(err.value)
        assert str(kaggle_dir / task.slug / "raw") in message
        assert f"kaggle competitions download -c {task.slug} -p {kaggle_dir / task.slug / 'raw'}" in message


def _kaggle_zip(raw: Path, slug: str, tables: dict[str, pd.DataFrame]) -> None:
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / f"{slug}.zip", "w") as zf:
        for name, frame in tables.items():
            zf.writestr(name, frame.to_csv(index=False))


def test_paper_task_configs_on_kaggle_shaped_downloads(kaggle_dir: Path, tmp_path: Path) -> None:
    """The paper's tasks cannot ship data; their conf/task_overrides rules run here on downloads of Kaggle's shape."""
    data = tmp_path / "data"
    for slug in (
        "commonlit-evaluate-student-summaries",
        "playground-series-s3e20",
        "playground-series-s3e15",
    ):
        shutil.copytree(kaggle_dir / slug, data / slug)
    rng = np.random.default_rng(0)

    # CommonLit: summaries + prompts tables; the test shares no prompt with train
    n = 400
    summaries = pd.DataFrame(
        {"student_id": [f"s{i:05d}" for i in range(n)], "prompt_id": rng.choice(["p1", "p2", "p3", "p4"], n),
         "text": ["a summary"] * n, "content": rng.normal(size=n), "wording": rng.normal(size=n)}
    )  # fmt: skip
    prompts = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"], "prompt_title": list("abcd")})
    _kaggle_zip(
        data / "commonlit-evaluate-student-summaries" / "raw",
        "commonlit-evaluate-student-summaries",
        {
            "summaries_train.csv": summaries,
            "summaries_test.csv": summaries[["student_id", "prompt_id", "text"]].head(4),
            "prompts_train.csv": prompts,
            "sample_submission.csv": summaries[["student_id", "content", "wording"]].head(4),
        },
    )
    prep = prepare_task(load_task(data, "commonlit-evaluate-student-summaries"), tmp_path / "cache")
    train, test = _read(prep.public_dir / "train.csv"), _read(prep.public_dir / "test.csv")
    assert prep.split_method == "group" and prep.submission_columns == ["content", "wording"]
    assert not set(train["prompt_id"]) & set(test["prompt_id"])
    assert list(test.columns) == ["student_id", "prompt_id", "text"]
    assert (prep.public_dir / "prompts_train.csv").is_file()

    # s3e20: weekly rows per location over years; the test is the last weeks
    weeks = pd.MultiIndex.from_product(
        [[2019, 2020, 2021], range(53), range(5)], names=["year", "week_no", "loc"]
    )
    co2 = weeks.to_frame(index=False)
    co2.insert(0, "ID_LAT_LON_YEAR_WEEK", [f"ID_{r.loc}_{r.year}_{r.week_no:02d}" for r in co2.itertuples()])
    co2["so2"] = rng.random(len(co2))
    co2["emission"] = rng.random(len(co2)) * 100
    _kaggle_zip(
        data / "playground-series-s3e20" / "raw",
        "playground-series-s3e20",
        {"train.csv": co2, "test.csv": co2.drop(columns=["emission"]).head(3),
         "sample_submission.csv": co2[["ID_LAT_LON_YEAR_WEEK", "emission"]].head(3)},
    )  # fmt: skip
    prep = prepare_task(load_task(data, "playground-series-s3e20"), tmp_path / "cache")
    train, test = _read(prep.public_dir / "train.csv"), _read(prep.public_dir / "test.csv")
    as_key = lambda f: f["year"].astype(int) * 100 + f["week_no"].astype(int)  # noqa: E731
    assert prep.split_method == "time" and as_key(train).max() < as_key(test).min()

    # s3e15: one data.csv; rows with an empty target are Kaggle's test and cannot be graded
    heat = pd.DataFrame({"id": range(300), "pressure": rng.random(300), "x_e_out [-]": rng.normal(size=300)})
    heat.loc[heat.index % 3 == 0, "x_e_out [-]"] = np.nan
    _kaggle_zip(
        data / "playground-series-s3e15" / "raw",
        "playground-series-s3e15",
        {"data.csv": heat, "sample_submission.csv": heat[["id", "x_e_out [-]"]].head(3)},
    )
    prep = prepare_task(load_task(data, "playground-series-s3e15"), tmp_path / "cache")
    assert prep.n_train + prep.n_test == 200 and prep.submission_columns == ["x_e_out [-]"]
    assert list(_read(prep.public_dir / "test.csv").columns) == ["id", "pressure"]


def test_bad_splitter_config_is_one_clear_error(kaggle_dir: Path, tmp_path: Path) -> None:
    task = load_task(kaggle_dir, "titanic")
    task.split = {**task.split, "_target_": "src.tasks.splits.TimeSplit", "time_columns": ["Departure"]}
    with pytest.raises(PipesynthError, match="time column 'Departure'"):
        prepare_task(task, tmp_path)
    task.split = {"_target_": "src.tasks.splits.NoSuchSplit"}
    with pytest.raises(PipesynthError, match="cannot build its splitter"):
        prepare_task(task, tmp_path)


def test_public_split_facts_say_how_the_test_was_carved(dev: dict[str, tuple[Task, PreparedTask]]) -> None:
    facts = {slug: json.loads((prep.public_dir / "task.json").read_text()) for slug, (_, prep) in dev.items()}
    assert facts["titanic"]["split"] == {"kind": "stratified", "group_column": None, "time_columns": []}
    assert facts["house-prices-advanced-regression-techniques"]["split"]["kind"] == "random"
    assert facts["bike-sharing-demand"]["split"] == {
        "kind": "time", "group_column": None, "time_columns": ["datetime"]
    }  # fmt: skip
    spaceship = facts["spaceship-titanic"]["split"]
    assert spaceship["kind"] == "group" and spaceship["group_column"] == "PassengerId"
    assert spaceship["group_pattern"] == "^([^_]+)_"  # the group is gggg of gggg_pp
    insults = facts["detecting-insults-in-social-commentary"]["split"]
    assert insults["kind"] == "stratified" and insults["official_test"] is True
    # the per-class columns are listed as classes only where the metric scores one column per class
    assert facts["spooky-author-identification"]["classes"] == ["EAP", "HPL", "MWS"]
    assert not any("classes" in f for slug, f in facts.items() if slug != "spooky-author-identification")
    for slug, (_, prep) in dev.items():  # the manifest keeps the same facts
        assert json.loads(prep.manifest_path.read_text())["split"] == facts[slug]["split"], slug


def _prepare_counting_builds(task: Task, cache: str, builds: str) -> None:
    """Child process: prepare `task`, appending a line to `builds` each time it really builds (slowly, so two
    children overlap)."""
    original = prepare_module._build

    def counted(*args: object, **kwargs: object) -> dict:
        with open(builds, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return original(*args, **kwargs)

    prepare_module._build = counted  # type: ignore[assignment]  # this child's copy of the module only
    prepare_task(task, cache, seed=0)


def test_concurrent_preparations_of_one_task_build_it_once(kaggle_dir: Path, tmp_path: Path) -> None:
    task = load_task(kaggle_dir, "titanic")
    builds = tmp_path / "builds.txt"
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_prepare_counting_builds, args=(task, str(tmp_path / "cache"), str(builds)))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0]
    assert len(builds.read_text().splitlines()) == 1  # the second waited on the lock and found it cached
    prepared = prepare_task(task, tmp_path / "cache", seed=0)  # a cache hit that verifies every file
    assert prepared.answers_path.is_file()
    leftovers = [p.name for p in (tmp_path / "cache" / "tasks" / "titanic").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
