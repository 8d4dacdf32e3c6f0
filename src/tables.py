"""Regenerate the paper's tables and figures from logged suite runs (results.jsonl), never by hand.

    python -m src.tables                                   # every outputs/evaluate/**/results.jsonl
    python -m src.tables results=[a/results.jsonl,b/results.jsonl] out_dir=paper/

Writes paper/table1.{md,tex} (the paper's Table 1 layout, ours beside the paper's numbers),
paper/ablation.{md,tex} (solutions side by side) and paper/beaten.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config import user_errors_exit
from src.errors import PipesynthError
from src.reporting.tables import ablation, beaten_figure, records_frame, table1, write_table


def load_records(cfg: DictConfig) -> list[dict[str, Any]]:
    """All records of the given results files (or of every file the glob finds under the repo)."""
    root = Path(cfg.paths.root_dir)
    paths = [Path(p) for p in cfg.results] if cfg.results else sorted(root.glob(cfg.results_glob))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PipesynthError(
            f"results files not found: {missing}", "pass results=[<run dir>/results.jsonl,...]"
        )
    if not paths:
        raise PipesynthError(
            f"no results.jsonl under {root / cfg.results_glob}",
            "run a suite first: python -m src.evaluate suite=dev solution=baseline_gbdt",
        )
    return [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]


def tables(cfg: DictConfig) -> dict[str, Any]:
    """Build every table and figure; returns the written paths."""
    frame = records_frame(load_records(cfg))
    out = Path(cfg.out_dir)
    paper = OmegaConf.to_container(cfg.paper_table1, resolve=True)
    written = write_table(
        table1(frame, paper),
        out / "table1",
        "Table 1: generated solutions graded on held-out answers and rated on the real leaderboard (* rolling/leaked leaderboard).",
    )
    written += write_table(ablation(frame), out / "ablation", "Solutions compared over all their runs.")
    written.append(beaten_figure(frame, out / "beaten.png"))
    for path in written:
        print(path)
    return {"written": [str(p) for p in written], "records": len(frame)}


@hydra.main(version_base="1.3", config_path="../conf", config_name="tables")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    tables(cfg)


if __name__ == "__main__":
    main()
