"""Contamination exclusion without the suites' task folders (issue 29): the repo knows what it excludes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.corpus.contamination import exclusion_for_suites, exclusion_for_tasks, known_tasks, suite_tasks
from src.corpus.retrieval import corpus_rows


@pytest.fixture(scope="module")
def rows(shared_dir: Path):
    return corpus_rows(shared_dir / "data" / "linguacodus" / "result_prompts_new.csv")


def test_the_committed_list_matches_the_task_folders(rows, kaggle_dir: Path) -> None:
    """known_tasks.yaml is what the live folders give: it fails when a suite, a folder or the corpus changes."""
    slugs = list(dict.fromkeys(suite_tasks("dev") + suite_tasks("paper")))
    known = known_tasks()
    assert set(known) == set(slugs)
    live = exclusion_for_tasks([kaggle_dir / s for s in slugs], rows)
    for slug in slugs:
        assert known[slug]["corpus_matches"] == live.matches[slug], slug
        assert known[slug]["title"] == json.loads((kaggle_dir / slug / "task.json").read_text())["title"]


def test_a_data_dir_without_the_suites_excludes_the_same_competitions(
    rows, kaggle_dir: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "data" / "my-task"
    mine.mkdir(parents=True)
    (mine / "task.json").write_text(json.dumps({"slug": "my-task", "title": "Forecast my widgets"}))
    with_folders = exclusion_for_suites(["dev", "paper"], rows, kaggle_dir)
    without = exclusion_for_suites(["dev", "paper"], rows, tmp_path / "data", extra_tasks=["my-task"])
    assert without.competitions == with_folders.competitions and len(with_folders.competitions) == 3
    assert without.report["titanic"] == with_folders.report["titanic"] == 99
    assert without.matches["my-task"] == []
    # a folder that is absent and unknown is a warning, not an error
    assert exclusion_for_suites([], rows, tmp_path / "data", extra_tasks=["nowhere"]).competitions == set()
