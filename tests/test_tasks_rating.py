"""Rating against leaderboards: positions with ties, both directions, Kaggle's medal bands, flagged caveats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.tasks.metrics import get_metric
from src.tasks.rating import medal_positions, rank_score, rate
from src.tasks.registry import load_task

ACC, RMSE = get_metric("accuracy"), get_metric("rmse")


@pytest.mark.parametrize(
    ("teams", "gold", "silver", "bronze"),
    [
        (1, 1, 1, 1), (9, 1, 1, 3), (50, 5, 10, 20), (99, 9, 19, 39),  # < 100: 10% / 20% / 40%
        (100, 10, 20, 40), (249, 10, 49, 99),  # 100-249: top 10 / 20% / 40%
        (250, 10, 50, 100), (878, 11, 50, 100), (999, 11, 50, 100),  # 250-999: 10 + 0.2% / 50 / 100
        (1000, 12, 50, 100), (4549, 19, 227, 454),  # >= 1000: 10 + 0.2% / 5% / 10%
    ],
)  # fmt: skip
def test_medal_positions_per_team_band(teams: int, gold: int, silver: int, bronze: int) -> None:
    assert medal_positions(teams) == {"gold": gold, "silver": silver, "bronze": bronze}


@pytest.mark.parametrize("teams", [20, 150, 500, 2000])
def test_medals_on_synthetic_leaderboards_both_directions(teams: int) -> None:
    pos = medal_positions(teams)
    higher = list(np.linspace(1.0, 0.0, teams))  # distinct scores, best first
    lower = [1 - s for s in higher]  # the same leaderboard for an error metric
    for metric, board in ((ACC, higher), (RMSE, lower)):
        at = board.__getitem__  # 0-based: at(pos - 1) is the score at 1-based position pos
        eps = 1e-9 if metric.higher_is_better else -1e-9
        for medal in ("gold", "silver", "bronze"):
            # a hair better than the last medal team takes its place; tying it comes after it (Kaggle: the
            # earlier submission wins a tie), which drops to the next band
            assert rank_score(at(pos[medal] - 1) + eps, board, metric)["medal"] == medal
            assert rank_score(at(pos[medal] - 1) + eps, board, metric)["position"] == pos[medal]
        assert rank_score(at(pos["gold"] - 1), board, metric)["medal"] == (
            "silver" if pos["silver"] > pos["gold"] else None
        )
        assert rank_score(at(pos["bronze"] - 1), board, metric)["medal"] is None
        assert rank_score(at(0) + eps, board, metric)["position"] == 1


def test_position_ties_and_beaten_fraction() -> None:
    board = [0.9, 0.8, 0.8, 0.8, 0.7, 0.6]
    tied = rank_score(0.8, board, ACC)
    assert tied["position"] == 5 and tied["teams"] == 6  # after the three 0.8 teams, who submitted first
    assert tied["tied"] == 3 and tied["beaten"] == 2 and tied["beaten_fraction"] == pytest.approx(2 / 6)
    assert rank_score(0.95, board, ACC)["position"] == 1
    last = rank_score(0.1, board, ACC)
    assert last["position"] == 7 and last["beaten"] == 0  # behind every team: M + 1
    assert rank_score(0.75, board, ACC)["position"] == 5
    # the same leaderboard for an error metric reads the other way
    assert rank_score(0.8, board, RMSE)["position"] == 6 and rank_score(0.65, board, RMSE)["beaten"] == 5


def test_above_median_is_strict() -> None:
    board = [4.0, 3.0, 2.0, 1.0]  # median 2.5
    assert rank_score(2.6, board, ACC)["above_median"] and not rank_score(2.5, board, ACC)["above_median"]
    assert rank_score(2.4, board, RMSE)["above_median"] and not rank_score(2.6, board, RMSE)["above_median"]


def test_rounding_to_the_leaderboard_precision_makes_ties() -> None:
    board = [0.9, 0.77511, 0.7]
    assert rank_score(0.775114, board, ACC, decimals=5)["position"] == 3  # a tie, placed after the team
    assert rank_score(0.775114, board, ACC)["position"] == 2  # better than 0.77511 without rounding...
    assert rank_score(0.775106, board, ACC)["position"] == 3
    assert rank_score(0.775106, board, ACC, decimals=5)["tied"] == 1  # ...and a tie with it


def test_titanic_leaderboard_is_flagged(kaggle_dir: Path) -> None:
    rating = rate(load_task(kaggle_dir, "titanic"), 0.78)
    assert rating.teams == 4549
    assert "rolling leaderboard" in rating.flags and "leaked labels on the leaderboard" in rating.flags
    assert any("perfect score" in f for f in rating.flags)  # the data itself supports the config
    assert rating.approximate and rating.position is not None and 0 < rating.beaten_fraction < 1
    record = json.loads(json.dumps(rating.to_dict()))  # JSON-safe for results.jsonl
    assert record["flags"] == rating.flags


def test_spaceship_is_flagged_and_a_clean_task_is_not(kaggle_dir: Path) -> None:
    assert rate(load_task(kaggle_dir, "spaceship-titanic"), 0.8).flags
    horses = rate(load_task(kaggle_dir, "playground-series-s3e22"), 0.78181)
    assert horses.flags == [] and horses.position == 2 and horses.medal == "gold"  # ties the winner: after it
    board = pd.read_csv(kaggle_dir / "playground-series-s3e22" / "leaderboard.csv")
    assert horses.teams == len(board)


def test_lower_is_better_on_a_real_leaderboard(kaggle_dir: Path) -> None:
    task = load_task(kaggle_dir, "spooky-author-identification")
    board = pd.read_csv(task.leaderboard_path)["score"]
    assert rate(task, float(board.iloc[0]) - 1e-4).position == 1
    median = rate(task, float(board.median()) + 0.01)
    assert not median.above_median and median.medal is None
    assert rate(task, 10.0).beaten_fraction < 0.1


def test_official_test_rating_is_not_approximate(kaggle_dir: Path) -> None:
    rating = rate(load_task(kaggle_dir, "detecting-insults-in-social-commentary"), 0.84)
    assert not rating.approximate and rating.teams == 50 and rating.position == 2


def test_no_leaderboard_gives_a_reason(kaggle_dir: Path) -> None:
    rating = rate(load_task(kaggle_dir, "house-prices-advanced-regression-techniques"), 0.12)
    assert rating.position is None and rating.medal is None
    assert "no leaderboard.csv" in rating.reason
    assert "not rated" in str(rating)
    assert rate(load_task(kaggle_dir, "titanic"), None).reason == "no valid score to rate"


def test_leaderboard_against_the_declared_direction_is_flagged(kaggle_dir: Path, tmp_path: Path) -> None:
    # a leaderboard sorted as if lower were better, under a metric declared higher-is-better
    folder = tmp_path / "titanic"
    shutil.copytree(kaggle_dir / "titanic", folder, ignore=shutil.ignore_patterns("raw", "leaderboard.csv"))
    pd.DataFrame({"rank": [1, 2, 3], "score": [0.5, 0.6, 0.7]}).to_csv(
        folder / "leaderboard.csv", index=False
    )
    rating = rate(load_task(tmp_path, "titanic", overrides_dir=None), 0.62)
    assert any("contradicts" in f for f in rating.flags)
    assert rating.position == 3  # the declared direction still decides (after the tied 0.62)


# ------------------------------------------------------------------ uncertainty (bootstrap of the test rows)


def _s3e18(kaggle_dir: Path):  # noqa: ANN202
    # a clean leaderboard (mean column AUC, 1,047 teams) and a synthetic submission of known quality
    task = load_task(kaggle_dir, "playground-series-s3e18")
    rng = np.random.default_rng(0)
    n = 4000
    y_true = rng.integers(0, 2, (n, 2)).astype(float)
    y_pred = np.clip(y_true * 0.13 + rng.random((n, 2)) * 0.87, 0, 1)  # AUC about 0.645: mid-board
    return task, get_metric(task.metric), y_true, y_pred


def test_bootstrap_interval_holds_the_point_and_narrows_with_more_rows(kaggle_dir: Path) -> None:
    from src.tasks.rating import bootstrap_scores

    task, metric, y_true, y_pred = _s3e18(kaggle_dir)
    score = metric(y_true, y_pred)
    widths = []
    for n in (500, 2000, 4000):
        samples = bootstrap_scores(metric, y_true[:n], y_pred[:n], n_resamples=400, seed=0)
        assert len(samples) == 400
        rating = rate(task, metric(y_true[:n], y_pred[:n]), samples)
        assert rating.position_low <= rating.position <= rating.position_high
        assert rating.score_low >= rating.score_high  # higher is better: the best end first
        assert sum(rating.medal_probs.values()) == pytest.approx(1.0)
        widths.append(rating.position_high - rating.position_low)
    assert widths[0] > widths[1] > widths[2] > 0
    # seeded: the same resamples give the same interval; another seed a (slightly) different one
    again = bootstrap_scores(metric, y_true, y_pred, n_resamples=400, seed=0)
    np.testing.assert_array_equal(again, bootstrap_scores(metric, y_true, y_pred, n_resamples=400, seed=0))
    assert not np.array_equal(again, bootstrap_scores(metric, y_true, y_pred, n_resamples=400, seed=1))
    assert rate(task, score).position_low is None  # no samples: a point rating, as before


def test_a_medal_is_certain_only_when_the_whole_interval_is_in_its_band(kaggle_dir: Path) -> None:
    task, metric, _, _ = _s3e18(kaggle_dir)
    board = rate(task, 0.5)
    gold, bronze = board.thresholds["gold"], board.thresholds["bronze"]
    assert gold > bronze
    tight = rate(task, gold + 0.01, np.full(200, gold + 0.01))
    assert tight.medal == "gold" and tight.medal_certain and tight.medal_probs["gold"] == 1.0
    straddling = rate(task, gold + 1e-4, np.linspace(bronze - 0.01, gold + 0.01, 201))
    assert straddling.medal == "gold" and straddling.medal_certain is False
    assert 0 < straddling.medal_probs["gold"] < 1 and straddling.medal_probs["none"] > 0
    assert straddling.position_high > medal_positions(straddling.teams)["bronze"]
    assert "[" in str(straddling) and "p=" in str(straddling)
    far = rate(task, 0.5, np.full(50, 0.5))
    assert far.medal is None and far.medal_certain and far.medal_probs["none"] == 1.0


def test_lower_is_better_interval_runs_the_right_way(kaggle_dir: Path) -> None:
    task = load_task(kaggle_dir, "nomad2018-predict-transparent-conductors")
    rating = rate(task, 0.07, np.random.default_rng(0).normal(0.07, 0.004, 500))
    assert rating.score_low < rating.score_high  # lower is better: the best end is the smaller score
    assert rating.position_low < rating.position < rating.position_high


@pytest.mark.parametrize("slug", ["playground-series-s3e18", "nomad2018-predict-transparent-conductors"])
def test_beaten_fractions_match_rank_score_both_directions(kaggle_dir: Path, slug: str) -> None:
    from src.tasks.rating import beaten_fractions, read_leaderboard

    task = load_task(kaggle_dir, slug)
    metric = get_metric(task.metric)
    board, decimals = read_leaderboard(task)
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.choice(board, 20), rng.uniform(min(board), max(board), 50)])  # ties too
    fractions = beaten_fractions(scores, board, metric, decimals)
    expected = [rank_score(s, board, metric, decimals=decimals)["beaten_fraction"] for s in scores]
    np.testing.assert_allclose(fractions, expected)


def test_paired_resamples_cancel_the_test_rows_luck(kaggle_dir: Path, tmp_path: Path) -> None:
    """Two submissions of the same test on the same resamples: a submission that fixes some of the other's
    wrong rows is never worse on any resample (independent resamples would say it often is)."""
    from src.tasks.prepare import prepare_task
    from src.tasks.rating import bootstrap_scores, paired_beaten, paired_bootstrap_scores

    task = load_task(kaggle_dir, "playground-series-s3e22")
    prep = prepare_task(task, tmp_path / "cache", seed=0)
    answers = pd.read_csv(prep.answers_path)
    labels = sorted(answers["outcome"].unique())
    rng = np.random.default_rng(0)
    wrong = rng.random(len(answers)) < 0.3
    weak = answers.copy()
    weak.loc[wrong, "outcome"] = [
        labels[(labels.index(v) + 1) % len(labels)] for v in weak.loc[wrong, "outcome"]
    ]
    better = weak.copy()
    fixed = np.flatnonzero(wrong)[:8]  # eight of its wrong rows put right
    better.loc[fixed, "outcome"] = answers.loc[fixed, "outcome"]
    paths = []
    for name, frame in (("weak", weak), ("better", better)):
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)

    beaten = paired_beaten(task, prep, paths, n_resamples=300, seed=0)
    assert beaten is not None and beaten.shape == (2, 300)
    gain = beaten[1] - beaten[0]
    assert (gain >= 0).all() and gain.mean() > 0
    same = paired_beaten(task, prep, [paths[0], paths[0]], n_resamples=300, seed=0)
    assert same is not None and (same[1] == same[0]).all()  # the same submission: no gain on any resample

    metric = get_metric(task.metric)
    y_true, y_weak = answers["outcome"].to_numpy(), weak["outcome"].to_numpy()
    y_better = better["outcome"].to_numpy()
    paired = paired_bootstrap_scores(metric, y_true, [y_weak, y_better], n_resamples=300, seed=0)
    np.testing.assert_array_equal(
        paired[0], bootstrap_scores(metric, y_true, y_weak, n_resamples=300, seed=0)
    )
    unpaired = bootstrap_scores(metric, y_true, y_better, n_resamples=300, seed=1) - paired[0]
    assert (
        unpaired < 0
    ).mean() > 0.05  # what the pairing removes: resampled apart, the rows' luck often hides eight rows

    broken = tmp_path / "broken.csv"
    weak.drop(columns="outcome").to_csv(broken, index=False)
    assert paired_beaten(task, prep, [paths[0], broken]) is None  # an invalid submission: no gain to sample


def test_a_crowded_tie_at_the_top_is_ranked_as_kaggle_ranks_it() -> None:
    """189 teams share the best score (a real board has that): an equal score comes after all of them, so no
    gold; a better one is first; the bootstrap bands follow the same positions."""
    from src.tasks.rating import positions_of

    board = [1.0] * 189 + list(np.linspace(0.99, 0.5, 811))  # 1000 teams: gold = top 12, silver top 50
    tied = rank_score(1.0, board, ACC)
    assert tied["position"] == 190 and tied["tied"] == 189 and tied["medal"] is None
    assert tied["beaten"] == 811
    assert rank_score(0.995, board, ACC)["position"] == 190 and rank_score(0.995, board, ACC)["tied"] == 0
    samples = np.array([1.0, 0.995, 0.5])
    np.testing.assert_array_equal(
        positions_of(samples, board, ACC), [rank_score(s, board, ACC)["position"] for s in samples]
    )
    lower = [1 - s for s in board]  # the same board for an error metric: a perfect 0 tied 189 times
    assert rank_score(0.0, lower, RMSE)["position"] == 190 and rank_score(0.0, lower, RMSE)["medal"] is None
    few = [0.9] * 3 + [0.5] * 7  # 10 teams: gold is position 1; three share the top
    assert rank_score(0.95, few, ACC)["medal"] == "gold" and rank_score(0.9, few, ACC)["medal"] == "bronze"
