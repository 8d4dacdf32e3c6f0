"""Regenerate the paper's tables and figures from run records (results.jsonl, a training run's config), never by hand.

    python -m src.tables                                   # every outputs/evaluate/**/results.jsonl -> paper/
    python -m src.tables results=[a/results.jsonl,b/results.jsonl] out_dir=paper/
    python -m src.tables from_records=true                 # rebuild paper/ from the records in paper/records/

Writes into out_dir: table1.{md,tex} (suite results beside the paper's Table 1), table2.{md,tex} (fine-tuning
hyperparameters of a training run beside the paper's Table 2), figure2.{md,tex,png} (most popular model family
per data type x metric in the corpus, beside the paper's Figure 2), ablation.{md,tex} (variants: score per task
and overall, mean ± std over seeds) and beaten.png. The inputs are first copied into records_dir
(results.jsonl, train_config.yaml), and everything is built from that copy: same records, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from src.config import REPO_ROOT, user_errors_exit
from src.errors import PipesynthError
from src.reporting.results import ResultsStore, record_key
from src.reporting.tables import (
    ablation,
    ablation_effects,
    arm_checks,
    arm_of,
    beaten_figure,
    figure2_heatmap,
    figure2_table,
    records_frame,
    table1,
    table2,
    write_table,
)


def result_paths(cfg: DictConfig) -> list[Path]:
    """The results files named by `results`, else every file `results_glob` finds under the repo."""
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
    return paths


def load_records(paths: list[Path]) -> list[dict[str, Any]]:
    """All records of `paths`, one per (task, solution, seed) (a later file wins), sorted by that key."""
    merged: dict[Any, dict[str, Any]] = {}
    for path in paths:
        for record in ResultsStore(path).records:
            merged[record_key(record)] = record
    return [merged[k] for k in sorted(merged)]


def train_config_path(cfg: DictConfig) -> Path | None:
    """`train_config`, else the newest resolved training config under outputs/train (None: no training run)."""
    if cfg.train_config:
        path = Path(cfg.train_config)
        if not path.is_file():
            raise PipesynthError(
                f"train_config={path} does not exist",
                "pass <train run>/adapter/pipesynth_config.yaml or null",
            )
        return path
    found = sorted(Path(cfg.paths.root_dir).glob(cfg.train_glob), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def snapshot(cfg: DictConfig) -> Path:
    """Copy the inputs into records_dir (results.jsonl merged and sorted; train_config.yaml)."""
    records_dir = Path(cfg.records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(result_paths(cfg))
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    (records_dir / "results.jsonl").write_text(text)
    train = train_config_path(cfg)
    if train is not None:
        (records_dir / "train_config.yaml").write_text(train.read_text())
    return records_dir


def family_cells(cfg: DictConfig) -> Any:
    """Figure 2's cells from the training corpus (src.corpus.families.family_table)."""
    from src.corpus.families import family_table
    from src.corpus.linguacodus import load_linguacodus

    path = Path(cfg.figure2.corpus_path)
    if not path.is_file():
        raise PipesynthError(f"corpus not found at {path}", "set figure2.corpus_path (or paths.corpus_path)")
    dataset, _report = load_linguacodus(path)
    return family_table(dataset.to_pandas(), top=cfg.figure2.top)


def tables(cfg: DictConfig) -> dict[str, Any]:
    """Build every table and figure from records_dir (after snapshotting the inputs unless from_records)."""
    records_dir = Path(cfg.records_dir) if cfg.from_records else snapshot(cfg)
    results = records_dir / "results.jsonl"
    if not results.is_file():
        raise PipesynthError(
            f"from_records=true reads {results}, which does not exist",
            f"point records_dir at a folder holding results.jsonl (the committed ones: "
            f"records_dir={REPO_ROOT / 'paper' / 'records'}), or run python -m src.tables without from_records to "
            "snapshot the run records first",
        )
    records = load_records([results])
    frame = records_frame(records)
    out = Path(cfg.out_dir)
    t1 = OmegaConf.to_container(cfg.paper_table1, resolve=True)
    written = write_table(
        table1(frame, t1["rows"]),
        out / "table1",
        "Table 1: solutions graded on held-out answers and rated on the real leaderboard: score mean ± std "
        f"over seeds, position N/M [95% interval when known] (* rolling/leaked leaderboard); paper: {t1['source']}.",
    )
    written += write_table(
        ablation(frame),
        out / "ablation",
        "Ablation: each variant's score per task (mean ± std over seeds) and the % of leaderboard teams beaten "
        "(mean over tasks per seed, mean ± std over seeds).",
    )
    if any(arm_of(r["solution"]) for r in records):  # an ablation grid (+experiment=ablation) ran
        written += write_table(
            ablation_effects(records),
            out / "ablation_effects",
            "Ablation effects: each level against its axis's reference (instructions: the scripted nonsense "
            "text; refine, search: none; k: 1), in points of teams beaten, over records matched on task, seed and "
            "the other axes; 95% interval of the paired test-row bootstrap (same resamples for every arm).",
        )
        written += write_table(
            arm_checks(records),
            out / "ablation_arms",
            "Ablation arms as their records say they ran: instructions written by the model / retrieved, "
            "instruction fallbacks, refinements and refinement fallbacks, the LLM.",
        )
    written.append(beaten_figure(frame, out / "beaten.png"))
    train_cfg = records_dir / "train_config.yaml"
    if train_cfg.is_file():
        t2 = OmegaConf.to_container(cfg.paper_table2, resolve=True)
        written += write_table(
            table2(yaml.safe_load(train_cfg.read_text()), t2),
            out / "table2",
            f"Table 2: fine-tuning hyperparameters, the paper's ({t2['source']}) beside this run's resolved config.",
        )
    f2 = cfg.figure2
    cells = family_cells(cfg)
    published = OmegaConf.to_container(f2.published, resolve=True)
    caption = (
        "Figure 2: most popular model family per data type x metric in the training corpus "
        f"(count / instructions naming a family), beside the paper's cell ({f2.source})."
    )
    written += write_table(figure2_table(cells, published), out / "figure2", caption)
    written.append(figure2_heatmap(cells, out / "figure2.png", "Most popular model family (corpus)"))
    for path in written:
        print(path)
    return {"written": [str(p) for p in written], "records": len(frame), "records_dir": str(records_dir)}


@hydra.main(version_base="1.3", config_path="../conf", config_name="tables")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    tables(cfg)


if __name__ == "__main__":
    main()
