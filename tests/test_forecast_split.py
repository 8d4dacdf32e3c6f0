"""Forecasting tasks get a time split without a per-task override (issue 28), and a rating on a split of
another kind earns no medal. Real data: Kaggle's bike-sharing-demand under a new name (so its override, which
already says TimeSplit, does not apply)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from src.tasks.prepare import prepare_task
from src.tasks.rating import rate
from src.tasks.registry import load_task
from src.tasks.splits import asks_for_forecast, time_column


def _renamed(kaggle_dir: Path, root: Path, slug: str, **facts: object) -> Path:
    source = kaggle_dir / "bike-sharing-demand"
    folder = root / slug
    folder.mkdir(parents=True)
    os.symlink(source / "raw", folder / "raw")
    os.symlink(source / "leaderboard.csv", folder / "leaderboard.csv")
    base = json.loads((source / "task.json").read_text())
    (folder / "task.json").write_text(json.dumps({**base, "slug": slug, **facts}))
    (folder / "description.md").write_text((source / "description.md").read_text())
    return folder


def test_a_time_series_task_without_override_is_split_by_time(kaggle_dir: Path, tmp_path: Path) -> None:
    _renamed(kaggle_dir, tmp_path / "data", "rentals")
    task = load_task(tmp_path / "data", "rentals")  # the default overrides dir: nothing for this slug
    assert not task.split_overridden and task.split["_target_"].endswith("RandomSplit")
    prepared = prepare_task(task, tmp_path / "cache")
    assert prepared.split_method == "time"
    train = pd.read_csv(prepared.public_dir / "train.csv", parse_dates=["datetime"])
    test = pd.read_csv(prepared.public_dir / "test.csv", parse_dates=["datetime"])
    assert train["datetime"].max() < test["datetime"].min()  # the test is the latest period
    public = json.loads((prepared.public_dir / "task.json").read_text())
    assert public["split"]["kind"] == "time" and public["split"]["time_columns"] == ["datetime"]


def test_a_forecast_rated_on_a_random_split_earns_no_medal(kaggle_dir: Path, tmp_path: Path) -> None:
    _renamed(kaggle_dir, tmp_path / "data", "rentals")
    task = load_task(tmp_path / "data", "rentals")
    best = float(pd.read_csv(task.leaderboard_path)["score"].min())
    on_time = rate(task, best / 2, split_method="time")
    assert on_time.medal == "gold"
    on_random = rate(task, best / 2, split_method="stratified")
    assert on_random.medal is None and any("competition's is a later period" in f for f in on_random.flags)


@pytest.mark.parametrize(
    ("text", "forecast"),
    [
        ("Forecast daily sales of each store.", True),
        ("Predict the sales for the next year.", True),
        ("You are asked to predict total sales for every product in the following month.", True),
        ("Predict whether a passenger survived the sinking of the Titanic.", False),
        ("Predict the final price of each home.", False),
    ],
)
def test_forecast_wording(text: str, forecast: bool) -> None:
    assert asks_for_forecast(text) is forecast


def test_the_date_column_is_found_by_name_or_by_its_values() -> None:
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "store": ["a", "b", "c"], "when": ["2020-01-01", "2020-01-02", "2020-01-03"]}
    )
    assert time_column(frame) == "when"
    assert time_column(frame.assign(date=["2021-02-01", "2021-02-02", "2021-02-03"])) == "date"
    assert time_column(frame.drop(columns="when")) is None
    assert time_column(pd.DataFrame({"YrSold": [2008, 2009, 2010]})) is None  # a year number alone is no date
