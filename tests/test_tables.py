from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.errors import PipesynthError
from src.reporting.results import ResultsStore
from src.tables import tables

REPO = Path(__file__).resolve().parent.parent


def _record(task: str, solution: str, score: float | None, beaten: float | None) -> dict:
    rating = (
        None
        if beaten is None
        else {"position": 10, "teams": 100, "beaten_fraction": beaten, "medal": None, "flags": []}
    )
    return {
        "task": task, "solution": solution, "seed": 0, "metric": "rmse", "higher_is_better": False,
        "status": "ok" if score is not None else "invalid", "score": score, "rating": rating, "seconds": 3.0,
    }  # fmt: skip


def test_tables_are_built_from_records(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.jsonl")
    store.add(_record("playground-series-s3e15", "generate", 0.08, 0.4))
    store.add(_record("playground-series-s3e15", "baseline_gbdt", 0.07, 0.6))
    store.add(_record("titanic", "generate", None, None))
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "tables", overrides=[f"results=[{tmp_path / 'results.jsonl'}]", f"out_dir={tmp_path / 'paper'}"]
        )
    out = tables(cfg)
    table1 = (tmp_path / "paper" / "table1.md").read_text()
    assert (
        "Feature Imputation with a Heat Flux Dataset" in table1 and "1/694" in table1
    )  # the paper's row beside ours
    assert "0.08" in table1 and "0/1" in table1  # titanic: no valid run
    ablation = (tmp_path / "paper" / "ablation.md").read_text()
    assert "60.0%" in ablation and "40.0%" in ablation
    assert (tmp_path / "paper" / "beaten.png").stat().st_size > 1000
    assert out["records"] == 3


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("tables", overrides=[f"results=[{tmp_path / 'nope.jsonl'}]"])
    with pytest.raises(PipesynthError, match="nope.jsonl"):
        tables(cfg)
