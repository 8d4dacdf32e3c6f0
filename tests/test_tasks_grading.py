"""The grader: a score only from submission vs private answers; every invalid submission gets its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.tasks.grading import grade
from src.tasks.metrics import get_metric
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.registry import load_task

SLUGS = [
    "titanic", "spaceship-titanic", "house-prices-advanced-regression-techniques", "playground-series-s3e22",
    "playground-series-s3e18", "bike-sharing-demand", "spooky-author-identification",
    "detecting-insults-in-social-commentary", "nomad2018-predict-transparent-conductors",
]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(kaggle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreparedTask]:
    cache = tmp_path_factory.getbasetemp() / "tasks_cache"  # shared with the other task tests: cache hits
    return {slug: prepare_task(load_task(kaggle_dir, slug), cache, seed=0) for slug in SLUGS}


def _answers(prep: PreparedTask) -> pd.DataFrame:
    return pd.read_csv(prep.answers_path, dtype=str, keep_default_na=False)


def _perfect(prep: PreparedTask) -> pd.DataFrame:
    """The submission that copies the answers (one-hot for class-probability columns)."""
    answers = _answers(prep)
    sub = pd.DataFrame({prep.id_column: answers[prep.id_column]})
    for col in prep.submission_columns:
        if col in prep.targets:
            sub[col] = answers[col]
        else:
            sub[col] = (answers[prep.targets[0]] == col).astype(float)
    return sub


def _write(frame: pd.DataFrame, tmp_path: Path, name: str = "submission.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_sample_submission_is_valid_everywhere(prepared: dict[str, PreparedTask]) -> None:
    for slug, prep in prepared.items():
        result = grade(prep, prep.public_dir / "sample_submission.csv")
        assert result.valid and result.reason is None and result.score is not None, (slug, result)
        assert result.metric == prep.metric


def test_copying_the_answers_scores_perfectly(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    for slug, prep in prepared.items():
        result = grade(prep, _write(_perfect(prep), tmp_path))
        assert result.valid, (slug, result.reason)
        assert get_metric(prep.metric).is_perfect(result.score, tol=1e-6), (slug, result.score)


def test_row_order_does_not_matter(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["nomad2018-predict-transparent-conductors"]
    answers = _answers(prep)
    sub = answers.copy()
    noise = np.random.default_rng(0).normal(0, 0.05, (len(sub), 2))
    sub[prep.targets] = (answers[prep.targets].astype(float) + noise).clip(lower=0)
    in_order = grade(prep, _write(sub, tmp_path, "a.csv")).score
    shuffled = grade(prep, _write(sub.sample(frac=1, random_state=1), tmp_path, "b.csv")).score
    expected = get_metric("mean_column_rmsle")(answers[prep.targets].astype(float), sub[prep.targets])
    assert in_order == pytest.approx(shuffled) == pytest.approx(expected)


def test_scores_match_the_metric_on_real_predictions(
    prepared: dict[str, PreparedTask], tmp_path: Path
) -> None:
    prep = prepared["detecting-insults-in-social-commentary"]
    answers = _answers(prep)
    y = answers["Insult"].astype(int).to_numpy()
    scores = np.clip(0.3 * y + np.random.default_rng(1).random(len(y)) * 0.7, 0, 1)
    sub = pd.DataFrame({"id": answers["id"], "Insult": scores})
    result = grade(prep, _write(sub, tmp_path))
    assert result.score == pytest.approx(get_metric("roc_auc")(y, scores))
    assert 0.5 < result.score < 1


def test_labels_are_compared_by_value_not_spelling(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    # pandas writes a bool column as True/False, Kaggle's raw file says TRUE/FALSE; 1.0 is the label 1
    spaceship = prepared["spaceship-titanic"]
    sub = _perfect(spaceship)
    sub["Transported"] = sub["Transported"].str.lower().map({"true": "True", "false": "False"})
    assert grade(spaceship, _write(sub, tmp_path)).score == 1.0
    titanic = prepared["titanic"]
    sub = _perfect(titanic)
    sub["Survived"] = sub["Survived"].astype(float)
    assert grade(titanic, _write(sub, tmp_path)).score == 1.0


def test_log_loss_rows_need_not_sum_to_one(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["spooky-author-identification"]
    sub = _perfect(prep)
    sub[["EAP", "HPL", "MWS"]] = sub[["EAP", "HPL", "MWS"]] * 0.5 + 0.1  # rescaled by Kaggle's rule
    result = grade(prep, _write(sub, tmp_path))
    assert result.valid
    assert result.score == pytest.approx(-np.log(0.6 / 0.8))
    # columns in another order are matched by name
    result2 = grade(prep, _write(sub[["MWS", "id", "HPL", "EAP"]], tmp_path, "b.csv"))
    assert result2.score == pytest.approx(result.score)


# ------------------------------------------------------------------ every invalid-submission reason


def _invalid(prep: PreparedTask, path: Path, match: str) -> None:
    result = grade(prep, path)
    assert not result.valid and result.score is None, result
    assert result.reason and match in result.reason, result.reason


def test_missing_and_empty_and_unparsable_files(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["titanic"]
    _invalid(prep, tmp_path / "nope.csv", "no submission file")
    (tmp_path / "empty.csv").write_text("")
    _invalid(prep, tmp_path / "empty.csv", "empty")
    (tmp_path / "bad.csv").write_text('PassengerId,Survived\n1,0\n2,"1\n3,0,7,8\n')
    _invalid(prep, tmp_path / "bad.csv", "does not parse")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    _invalid(prep, tmp_path / "binary.csv", "does not parse")


def test_column_reasons(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["titanic"]
    sub = _perfect(prep)
    _invalid(prep, _write(sub.drop(columns=["Survived"]), tmp_path), "missing column(s) ['Survived']")
    _invalid(
        prep, _write(sub.rename(columns={"PassengerId": "id"}), tmp_path), "missing column(s) ['PassengerId']"
    )
    _invalid(prep, _write(sub.assign(extra=1), tmp_path), "unexpected column(s) ['extra']")
    (tmp_path / "dup.csv").write_text("PassengerId,Survived,Survived\n1,0,0\n")
    _invalid(prep, tmp_path / "dup.csv", "duplicate column(s) ['Survived']")
    spooky = prepared["spooky-author-identification"]
    _invalid(spooky, _write(_perfect(spooky).drop(columns=["HPL"]), tmp_path), "missing column(s) ['HPL']")
    labels = _answers(spooky)[["id", "author"]]  # a label column instead of class probabilities
    _invalid(spooky, _write(labels, tmp_path), "unexpected column(s) ['author']")


def test_row_and_id_reasons(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["house-prices-advanced-regression-techniques"]
    sub = _perfect(prep)
    _invalid(prep, _write(sub.iloc[:-3], tmp_path), f"{len(sub) - 3} rows, expected {len(sub)}")
    _invalid(prep, _write(pd.concat([sub, sub.iloc[:2]]), tmp_path), "rows, expected")
    dup = sub.copy()
    dup.loc[1, "Id"] = dup.loc[0, "Id"]
    _invalid(prep, _write(dup, tmp_path), "1 duplicate id(s)")
    wrong = sub.copy()
    wrong.loc[0, "Id"] = "999999"
    _invalid(prep, _write(wrong, tmp_path), "1 missing (e.g. ")
    _invalid(prep, _write(wrong, tmp_path), "1 unexpected (e.g. '999999')")
    # a train id is not a test id
    train_id = pd.read_csv(prep.public_dir / "train.csv", dtype=str)["Id"].iloc[0]
    wrong.loc[0, "Id"] = train_id
    _invalid(prep, _write(wrong, tmp_path), "do not match the test ids")


def test_value_reasons(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["bike-sharing-demand"]
    sub = _perfect(prep)
    for bad, reason in [
        ("", "empty/NaN"), ("nan", "empty/NaN"), ("NaN", "empty/NaN"), ("inf", "infinite"),
        ("-inf", "infinite"), ("lots", "non-numeric value(s), e.g. 'lots'"), ("-3", "must be >= 0"),
    ]:  # fmt: skip
        broken = sub.copy()
        broken.loc[5, "count"] = bad
        _invalid(prep, _write(broken, tmp_path), reason)
    house = prepared["house-prices-advanced-regression-techniques"]
    zero = _perfect(house)
    zero.loc[0, "SalePrice"] = "0"
    _invalid(house, _write(zero, tmp_path), "must be > 0")


def test_probability_reasons(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["playground-series-s3e18"]
    sub = _perfect(prep).astype({"EC1": float, "EC2": float})
    sub.loc[3, "EC2"] = 1.5
    _invalid(prep, _write(sub, tmp_path), "probabilities must lie in [0, 1]; column(s) ['EC2']")
    sub.loc[3, "EC2"] = -0.1
    _invalid(prep, _write(sub, tmp_path), "[0, 1]")
    spooky = prepared["spooky-author-identification"]
    zero_row = _perfect(spooky)
    zero_row.loc[0, ["EAP", "HPL", "MWS"]] = 0.0
    _invalid(spooky, _write(zero_row, tmp_path), "positive probability for at least one class")
    big = _perfect(spooky)
    big.loc[0, "EAP"] = 3.0
    _invalid(spooky, _write(big, tmp_path), "[0, 1]")


def test_label_reasons(prepared: dict[str, PreparedTask], tmp_path: Path) -> None:
    prep = prepared["playground-series-s3e22"]
    sub = _perfect(prep)
    sub.loc[0, "outcome"] = "resurrected"
    _invalid(prep, _write(sub, tmp_path), "outside the known labels, e.g. 'resurrected'")
    sub.loc[0, "outcome"] = ""
    _invalid(prep, _write(sub, tmp_path), "empty/NaN")
    titanic = prepared["titanic"]
    probs = _perfect(titanic)
    probs["Survived"] = 0.73  # a probability where a label is expected
    _invalid(titanic, _write(probs, tmp_path), "outside the known labels")


# ------------------------------------------------------------------ grading never raises


def test_class_names_where_a_probability_metric_needs_numbers_are_invalid(
    prepared: dict[str, PreparedTask], tmp_path: Path
) -> None:
    prep = prepared["spooky-author-identification"]
    sub = _perfect(prep)
    sub["EAP"] = _answers(prep)["author"]  # the label where its probability belongs
    _invalid(prep, _write(sub, tmp_path), "non-numeric")
    # a task whose answers are class names but whose metric scores one number per row (a leaf-style task
    # configured with its label column as the submission): today's ValueError comes back as a reason
    labels_as_numbers = PreparedTask(
        **{**prep.__dict__, "submission_columns": ["author"], "metric": "roc_auc"}
    )
    sub = pd.DataFrame({"id": _answers(prep)["id"], "author": 0.5})
    result = grade(labels_as_numbers, _write(sub, tmp_path, "auc.csv"))
    assert not result.valid and result.score is None
    assert "class names" in result.reason and "roc_auc" in result.reason


def test_a_grader_defect_is_an_invalid_grade_not_an_exception(
    prepared: dict[str, PreparedTask], tmp_path: Path
) -> None:
    prep = prepared["titanic"]
    missing = PreparedTask(**{**prep.__dict__, "answers_path": tmp_path / "gone.csv"})
    result = grade(missing, prep.public_dir / "sample_submission.csv")
    assert not result.valid and result.reason.startswith("grader error: FileNotFoundError")
    # the arrays a rating resamples travel with a valid grade, never into its dict
    valid = grade(prep, prep.public_dir / "sample_submission.csv")
    assert valid.valid and len(valid.y_true) == len(valid.y_pred) == prep.n_test
    assert set(valid.to_dict()) == {"score", "valid", "reason", "metric"}
