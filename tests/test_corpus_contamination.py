"""The competitions being evaluated stay out of the training data and the retrieval index (issue 9, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.corpus.build import build_corpus_with_report
from src.corpus.contamination import (
    TaskText,
    exclusion_for_suites,
    exclusion_for_tasks,
    normalise,
)
from src.corpus.linguacodus import load_linguacodus
from src.corpus.retrieval import CorpusIndex, TfidfEmbedder
from src.errors import PipesynthError
from tests.conftest import SHARED_DIR
from tests.test_corpus_build import corpus_cfg

DATA_DIR = SHARED_DIR / "data" / "kaggle"
CORPUS = SHARED_DIR / "data" / "linguacodus" / "result_prompts_new.csv"
TITANIC = "start-here-predict-survival-on-f6791d6c"  # the corpus id of Titanic (derived from its description)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return load_linguacodus(CORPUS)[0].to_pandas()


def test_normalise() -> None:
    assert normalise("<!-- src -->  **Titanic** - Machine\nLearning!") == "titanic machine learning"


def test_dev_and_paper_suites_remove_the_measured_rows(rows: pd.DataFrame) -> None:
    dev = exclusion_for_suites(["dev"], rows, DATA_DIR)
    assert dev.report["titanic"] == 99
    assert dev.report["spooky-author-identification"] == 14
    assert dev.report["house-prices-advanced-regression-techniques"] == 23
    assert sum(dev.report.values()) == 136 and len(dev.competitions) == 3
    # Spaceship Titanic is another competition: its title does not pull in Titanic's rows
    assert dev.report["spaceship-titanic"] == 0
    paper = exclusion_for_suites(["paper"], rows, DATA_DIR)
    assert set(paper.report) == {
        "playground-series-s3e15",
        "playground-series-s3e17",
        "playground-series-s3e20",
        "playground-series-s3e4",
        "commonlit-evaluate-student-summaries",
    }
    assert sum(paper.report.values()) == 0
    record = dev.merge(paper).as_dict()
    assert record["suites"] == ["dev", "paper"] and record["rows_removed_total"] == 136
    json.dumps(record)  # a run can write it as it is


def test_match_by_title_phrase_or_description_overlap(rows: pd.DataFrame) -> None:
    spooky = rows[rows.competition.str.startswith("share-code-and-discuss")].description.iloc[0]
    by_text = TaskText("spooky-copy", "Something Else Entirely", f"Intro.\n{spooky}\nMore.")
    by_title = TaskText("t", "Titanic - Machine Learning from Disaster", "no shared words")
    unrelated = TaskText("u", "Predict the Weather of Mars", "Forecast temperatures on Mars from rover data.")
    ex = exclusion_for_tasks([by_text, by_title, unrelated], rows)
    assert ex.report == {"spooky-copy": 14, "t": 99, "u": 0}
    assert ex.matches["t"] == [TITANIC]


def test_unknown_suite_or_empty_task_folder_is_a_clear_error(rows: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(PipesynthError, match="suite 'nope'"):
        exclusion_for_suites(["nope"], rows, DATA_DIR)
    with pytest.raises(PipesynthError, match="neither task.json nor description.md"):
        exclusion_for_tasks([tmp_path], rows)


def _titanic_rows(built_rows: list[str]) -> int:
    return sum(c == TITANIC for c in built_rows)


def test_titanic_in_the_suite_keeps_its_99_prompts_out_of_training_validation_and_index(
    rows: pd.DataFrame,
) -> None:
    # only titanic excluded (no suite): none of its rows reaches either split
    built = build_corpus_with_report(
        corpus_cfg("data.contamination.exclude_suites=[]", "data.contamination.exclude_tasks=[titanic]")
    )
    for split in built.dataset.values():
        assert _titanic_rows(split["competition"]) == 0
        assert not any("Titanic" in d for d in split["description"])
    assert built.exclusion.report == {"titanic": 99}
    assert built.steps[0].name == "contamination" and built.steps[0].removed == 99
    assert built.stats()["corpus/contamination/titanic"] == 99

    # nor the index, even when the query is Titanic's own corpus description
    exclusion = exclusion_for_tasks([DATA_DIR / "titanic"], rows)
    index = CorpusIndex(rows, TfidfEmbedder(), exclude=exclusion)
    assert TITANIC not in index.competitions and len(index.competitions) == 90
    titanic_text = rows[rows.competition == TITANIC].description.iloc[0]
    hits = index.nearest(titanic_text, "tabular", "categorization_accuracy", n=90)
    assert len(hits) == 90 and all(h.competition != TITANIC for h in hits)
    assert not any("Titanic" in text for h in hits for text in h.instructions)


def test_explicit_opt_out_keeps_the_rows() -> None:
    built = build_corpus_with_report(corpus_cfg("data.contamination.exclude_suites=[]"))
    kept = sum(_titanic_rows(split["competition"]) for split in built.dataset.values())
    assert kept == 75  # all 99, less top_k=75
    assert built.exclusion.report == {} and built.stats()["corpus/contamination_rows_removed"] == 0


def test_missing_contamination_block_is_a_clear_error() -> None:
    cfg = corpus_cfg()
    OmegaConf.set_struct(cfg, False)
    del cfg.data["contamination"]
    with pytest.raises(PipesynthError, match="no `contamination` block"):
        build_corpus_with_report(cfg)
