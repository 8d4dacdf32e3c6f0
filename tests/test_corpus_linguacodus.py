"""The paper's real training sample (1,330 rows): fields, parse counts, and the release wording byte for byte."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset

from src.corpus.instruction import ParseReport
from src.corpus.linguacodus import competition_id, load_linguacodus, parse_release_prompt
from src.corpus.metric_categories import load_metric_categories
from src.corpus.prompts import build_template
from src.errors import PipesynthError


@pytest.fixture(scope="module")
def loaded(corpus_csv: Path) -> tuple[Dataset, ParseReport]:
    return load_linguacodus(corpus_csv)


def test_real_csv_parse_counts(loaded: tuple[Dataset, ParseReport]) -> None:
    ds, report = loaded
    # measured on result_prompts_new.csv: every row's fields parse; 1,030 instructions have all three core
    # sections, 40 some of them, 260 are free text without section headings (kept, flagged incomplete)
    assert (report.full, report.partial, report.unstructured, report.failed) == (1030, 40, 260, 0)
    assert report.full + report.partial + report.unstructured + report.failed == report.total == 1330
    assert report.reasons["no section headings"] == 260 and report.reasons["missing architecture"] == 22
    assert len(ds) == 1330 and sum(ds["is_complete"]) == 1030


def test_real_csv_fields(loaded: tuple[Dataset, ParseReport]) -> None:
    ds, _ = loaded
    ranks = Counter(ds["rank"])
    assert ranks[1] == 92 and ranks[9] == 85 and ranks[20] == 6 and ranks[28] == 3 and max(ranks) == 99
    assert Counter(ds["data_type"]).most_common(3) == [
        ("tabular data", 582),
        ("image data", 442),
        ("text data", 138),
    ]
    categories = Counter(ds["metric_category"])
    assert len(categories) == 16 and categories["categorization_accuracy"] == 261 and categories["auc"] == 237
    assert set(categories) <= set(load_metric_categories())  # every real category has a direction
    assert len(set(ds["competition"])) == 91 and len(set(ds["kernel_id"])) == 1330
    first = ds[0]
    assert (
        first["kernel_id"] == "18295889"
        and first["rank"] == 9
        and first["metric_category"] == "f_score_multiclass"
    )
    assert first["description"].startswith(
        "Determine the species of a seedling from an image\nLet’s identify"
    )
    assert first["preprocessing"].startswith("- The code uses the `os.walk` function")
    assert first["prediction"].startswith("- The code uses another `os.walk`")
    assert not first["instruction"].endswith("</s>")


def test_release_template_reproduces_every_csv_prompt_byte_for_byte(
    loaded: tuple[Dataset, ParseReport], corpus_csv: Path
) -> None:
    ds, _ = loaded
    original = pd.read_csv(corpus_csv, dtype={"kaggle_id": str}).set_index("kaggle_id")["prompt"]
    template = build_template("linguacodus_release")
    for row in ds:
        pair = template.render_pair(row)
        assert pair["prompt"] + pair["completion"] == original[row["kernel_id"]], row["kernel_id"]


def test_competition_id_is_stable_and_readable() -> None:
    cid = competition_id("Determine the species of a seedling from an image\nMore text. ")
    assert cid == competition_id("Determine  the species of a seedling from an image More text.")
    assert cid.startswith("determine-the-species-of-a-") and len(cid.rsplit("-", 1)[1]) == 8
    assert competition_id("Other task") != cid


def _prompt(
    rank: str = "third",
    data_type: str = "tabular data",
    metric: str = "auc",
    body: str = "Data preprocessing:\n- x",
) -> str:
    return (
        "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nImagine that you are is an data analyst. Your objective is writing "
        f"the {rank} place instruction for solving this machine learning task. Task: Predict churn\n"
        "The data has a line that starts with The.\n"
        f"The {data_type} data is used for the problem. The metric type is {metric} for the problem. Your response "
        f"contains the main information about data preprocessing, model architecture and model training. [/INST]\n{body}</s>"
    )


def test_parse_release_prompt_takes_the_last_data_type_sentence() -> None:
    fields = parse_release_prompt(_prompt(rank="28.0th", data_type="tabular data_time series"))
    assert fields["rank"] == 28 and fields["data_type"] == "tabular data_time series"
    assert fields["description"] == "Predict churn\nThe data has a line that starts with The."
    assert fields["instruction"] == "Data preprocessing:\n- x"


def test_unparseable_rows_are_counted_and_logged_not_dropped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        (1, _prompt(), "11"),
        (2, _prompt(rank="umpteenth"), "12"),
        (3, _prompt().replace("[/INST]", "[INST]"), "13"),
        (4, _prompt(body=""), "14"),
        (5, "Task: nothing else [/INST] Data preprocessing:\n- x", "15"),
        (6, None, "16"),
    ]
    csv = tmp_path / "prompts.csv"
    pd.DataFrame(rows, columns=["", "prompt", "kaggle_id"]).to_csv(csv, index=False)
    with caplog.at_level("WARNING"):
        ds, report = load_linguacodus(csv)
    assert len(ds) == 1 and report.total == 6 and report.failed == 5
    reasons = dict(report.failures)
    assert reasons["12"] == "unreadable rank 'umpteenth'"
    assert reasons["13"] == "no [/INST] separator"
    assert reasons["14"] == "empty instruction after [/INST]"
    assert "no 'writing the <N> place instruction' sentence" in reasons["15"]
    assert reasons["16"] == "empty prompt cell"
    assert sum("not used" in r.message for r in caplog.records) == 5


def test_missing_file_and_missing_column_each_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipesynthError, match="does not exist") as err:
        load_linguacodus(tmp_path / "nope.csv")
    assert "corpus_path" in str(err.value)
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["x"], "kaggle_id": [1]}).to_csv(csv, index=False)
    with pytest.raises(PipesynthError, match=r"lacks column\(s\) \['prompt'\]") as err:
        load_linguacodus(csv)
    assert "fix:" in str(err.value)
