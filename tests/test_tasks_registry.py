"""Task registry: task folders + per-task config; every bad input is one clear PipesynthError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.errors import PipesynthError
from src.tasks.registry import load_suite, load_task

FACTS = {
    "title": "T", "data_type": "tabular", "task_type": "regression", "id_column": "id", "targets": ["y"],
    "metric": "rmse", "higher_is_better": False,
}  # fmt: skip


def _folder(root: Path, slug: str = "toy", facts: dict | None = None, text: str | None = None) -> Path:
    folder = root / slug
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(text if text is not None else json.dumps(facts or FACTS))
    return folder


def test_real_task_facts_and_config(kaggle_dir: Path) -> None:
    bike = load_task(kaggle_dir, "bike-sharing-demand")
    assert bike.slug == "bike-sharing-demand" and bike.root == kaggle_dir / "bike-sharing-demand"
    assert bike.targets == ["count"] and bike.metric == "rmsle" and bike.higher_is_better is False
    assert bike.teams == 3242 and bike.has_leaderboard and bike.has_data
    assert bike.notes == ["train has casual and registered columns that test lacks"]
    assert (
        bike.split["_target_"] == "src.tasks.splits.TimeSplit"
    )  # from conf/task_overrides/bike-sharing-demand.yaml
    assert bike.split["time_columns"] == ["datetime"] and bike.split["test_fraction"] == 0.2
    titanic = load_task(kaggle_dir, "titanic")
    assert titanic.leaderboard_flags == ["rolling", "leaked"] and titanic.leaderboard_note
    insults = load_task(kaggle_dir, "detecting-insults-in-social-commentary")
    assert insults.id_column is None  # the registry keeps the fact; prepare makes the synthetic id
    house = load_task(kaggle_dir, "house-prices-advanced-regression-techniques")
    assert house.teams is None and not house.has_leaderboard
    # the suite's defaults merge under the task's own split config
    merged = load_task(kaggle_dir, "bike-sharing-demand", split_defaults={"test_fraction": 0.3})
    assert merged.split["test_fraction"] == 0.3 and merged.split["_target_"].endswith("TimeSplit")


def test_missing_folder_names_it_and_lists_the_tasks(kaggle_dir: Path) -> None:
    with pytest.raises(PipesynthError, match="does not exist.*titanic"):
        load_task(kaggle_dir, "no-such-competition")


def test_missing_task_json(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    with pytest.raises(PipesynthError, match="has no task.json"):
        load_task(tmp_path, "toy")


def test_invalid_json(tmp_path: Path) -> None:
    _folder(tmp_path, text="{not json")
    with pytest.raises(PipesynthError, match="not valid JSON"):
        load_task(tmp_path, "toy")


@pytest.mark.parametrize("field", ["metric", "targets", "higher_is_better", "task_type"])
def test_missing_field_is_named(tmp_path: Path, field: str) -> None:
    _folder(tmp_path, facts={k: v for k, v in FACTS.items() if k != field})
    with pytest.raises(PipesynthError, match=f"lacks field.*{field}") as err:
        load_task(tmp_path, "toy")
    assert "task.json" in str(err.value)


def test_unknown_metric_and_contradicting_direction(tmp_path: Path) -> None:
    _folder(tmp_path, "a", facts={**FACTS, "metric": "quadratic_kappa"})
    with pytest.raises(PipesynthError, match="unknown metric 'quadratic_kappa'"):
        load_task(tmp_path, "a")
    _folder(tmp_path, "b", facts={**FACTS, "higher_is_better": True})
    with pytest.raises(PipesynthError, match="contradicts metric 'rmse'"):
        load_task(tmp_path, "b")


def test_slug_mismatch(tmp_path: Path) -> None:
    _folder(tmp_path, "toy", facts={**FACTS, "slug": "other"})
    with pytest.raises(PipesynthError, match="says slug 'other'"):
        load_task(tmp_path, "toy")


def test_bad_override_key(tmp_path: Path) -> None:
    _folder(tmp_path)
    overrides = tmp_path / "conf_tasks"
    overrides.mkdir()
    (overrides / "toy.yaml").write_text("splits:\n  test_fraction: 0.1\n")
    with pytest.raises(PipesynthError, match="unknown key.*splits"):
        load_task(tmp_path, "toy", overrides_dir=overrides)


def test_suite_without_tasks(tmp_path: Path) -> None:
    with pytest.raises(PipesynthError, match="lists no tasks"):
        load_suite({"name": "empty", "tasks": []}, tmp_path)


def test_task_without_data_says_how_to_get_it(kaggle_dir: Path) -> None:
    task = load_task(kaggle_dir, "playground-series-s3e17")
    assert not task.has_data and task.has_leaderboard
    with pytest.raises(PipesynthError) as err:
        task.require_data()
    message = str(err.value)
    assert f"{kaggle_dir / task.slug / 'raw'}" in message
    assert "kaggle competitions download -c playground-series-s3e17 -p" in message
