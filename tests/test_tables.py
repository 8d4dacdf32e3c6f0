"""paper/ is built from run records only: Table 1, Table 2, Figure 2, the ablation; the committed paper/ is
regenerated from its committed records byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.errors import PipesynthError
from src.reporting.results import ResultsStore
from src.tables import tables

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "paper"


def _cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("tables", overrides=list(overrides))


def _record(task: str, solution: str, seed: int, score: float | None, beaten: float | None, **rating) -> dict:
    rated = None if beaten is None else {"position": 10, "teams": 100, "beaten_fraction": beaten,
                                         "medal": None, "flags": [], **rating}  # fmt: skip
    return {"task": task, "solution": solution, "seed": seed, "metric": "rmse", "higher_is_better": False,
            "status": "ok" if score is not None else "invalid", "score": score, "rating": rated, "seconds": 3.0}  # fmt: skip


def _build(tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    store = ResultsStore(tmp_path / "results.jsonl")
    store.add(_record("playground-series-s3e15", "generate", 0, 0.08, 0.4, position_low=5, position_high=20))
    store.add(_record("playground-series-s3e15", "generate", 1, 0.10, 0.2))
    store.add(_record("playground-series-s3e15", "baseline_gbdt", 0, 0.07, 0.6, medal="bronze"))
    store.add(_record("titanic", "generate", 0, None, None))
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump({"model": {"name": "smollm2_135m"}, "lora": {"r": 16, "lora_alpha": 16,
                                     "target_modules": ["q_proj", "v_proj"]}, "optimizer": {
                                     "_target_": "src.training.module.paged_adamw_32bit", "lr": 2e-4}}))  # fmt: skip
    out = tmp_path / "paper"
    cfg = _cfg(f"results=[{tmp_path / 'results.jsonl'}]", f"out_dir={out}", f"train_config={train}", *extra)
    return tables(cfg), out


def test_tables_are_built_from_records(tmp_path: Path) -> None:
    result, out = _build(tmp_path)
    table1 = (out / "table1.md").read_text()
    assert "Feature Imputation with a Heat Flux Dataset" in table1 and "1/694" in table1  # the paper beside
    assert "0.09 ± 0.014" in table1  # generate: mean ± std of 0.08 and 0.10
    assert "10/100 [5–20]" in table1  # position N/M [interval] where the record carries one
    assert "0/1" in table1 and "bronze" in table1  # titanic: no valid run
    ablation = (out / "ablation.md").read_text()
    assert "30 ± 14" in ablation and "| baseline_gbdt" in ablation and "60" in ablation
    table2 = (out / "table2.md").read_text()
    assert "| LoRA attention dimension" in table2 and "| 64 " in table2 and "| 16 " in table2
    assert "paged_adamw_32bit" in table2 and "q_proj, v_proj" in table2
    figure2 = (out / "figure2.md").read_text()
    assert "| tabular" in figure2 and "gbdt" in figure2 and "lightgbm" in figure2  # ours and the paper's
    assert (out / "figure2.png").stat().st_size > 5000 and (out / "beaten.png").stat().st_size > 1000
    assert result["records"] == 4 and (out / "records" / "results.jsonl").is_file()
    assert (out / "records" / "train_config.yaml").read_text() == (tmp_path / "train.yaml").read_text()


def test_regenerating_from_records_gives_identical_files(tmp_path: Path) -> None:
    first, out = _build(tmp_path)
    again = tmp_path / "again"
    shutil.copytree(out / "records", again / "records")
    tables(_cfg(f"out_dir={again}", "from_records=true"))
    for path in first["written"]:
        assert Path(path).read_bytes() == (again / Path(path).name).read_bytes(), path


def test_committed_paper_is_regenerated_identically(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    shutil.copytree(PAPER / "records", out / "records")
    result = tables(_cfg(f"out_dir={out}", "from_records=true"))
    for path in result["written"]:
        name = Path(path).name
        assert (PAPER / name).read_bytes() == Path(path).read_bytes(), (
            f"paper/{name} drifted from its records"
        )


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipesynthError, match="nope.jsonl"):
        tables(_cfg(f"results=[{tmp_path / 'nope.jsonl'}]", f"out_dir={tmp_path}"))
