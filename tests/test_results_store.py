import json
from pathlib import Path

import pytest

from src.reporting.results import ResultsStore


def _rec(task: str, seed: int = 0, score: float = 1.0) -> dict:
    return {"task": task, "solution": "s", "seed": seed, "score": score}


def test_store_persists_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.add(_rec("a"))
    store.add(_rec("b"))
    store.add(_rec("a", score=2.0))  # same key replaces, never duplicates
    again = ResultsStore(path)
    assert len(again) == 2
    assert ("a", "s", 0) in again and ("b", "s", 0) in again
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["score"] for r in lines) == [1.0, 2.0]
    assert not list(tmp_path.glob(".results.jsonl.*"))  # no temp file left behind


def test_store_rejects_corrupt_file_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_rec("a")) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"results.jsonl:2"):
        ResultsStore(path)
