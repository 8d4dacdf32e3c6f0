"""Generate a solution for one task: description -> ranked instructions -> refinement -> code -> solution.py.

    python -m src.generate task=titanic                                  # offline: Qwen2.5-Coder-0.5B + newest
                                                                         # qlora_qwen05b_cpu adapter (else the base
                                                                         # model), execution refinement, compiler,
                                                                         # search (conf/generation/default.yaml)
    python -m src.generate task=../shared/data/kaggle/titanic            # any task folder (or a prepared public/)
    python -m src.generate task=titanic refine=multi_role coder=llm llm=openai llm.model=gpt-4o-mini
    python -m src.generate task=titanic refine=none verify=never         # the paper's path, no sandbox run
    python -m src.generate task=titanic llm.adapter=null k=1             # the base model, one instruction
    python -m src.generate task=titanic llm.cache.mode=replay            # replay a logged run from the LLM cache
    python -m src.generate task=<folder> mode=predict                    # fit on all labelled rows, predict the
                                                                         # task's raw/test.csv -> submission.csv

Writes into the run folder (outputs/generate/<task>/<timestamp>/): journal.json (every candidate: instruction,
code, sandbox result, validation score, parent), instruction.md and solution.py; prints the chosen instruction.
The task is prepared first (public/private split, cached); generation reads only its public files.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config import user_errors_exit
from src.errors import PipesynthError

log = logging.getLogger(__name__)


MODES = ("evaluate", "predict")


def resolve_public_dir(
    task: str, data_dir: str | Path, cache_dir: str | Path, split_seed: int = 0, predict: bool = False
) -> Path:
    """The public folder for `task`: a slug under `data_dir`, a task folder (task.json + raw/), or a prepared
    public folder (task.json + train.csv + sample_submission.csv). Task folders are prepared (cached).

    predict: prepared for predict mode (all labelled rows; the task's own test file), task folders only.
    """
    from src.tasks.prepare import prepare_task
    from src.tasks.registry import load_task

    task = str(task)
    path = Path(task).expanduser()
    if "/" not in task and (Path(data_dir) / task).is_dir() or not path.is_dir():
        if "/" in task:
            raise PipesynthError(
                f"task folder '{path}' does not exist", "pass a slug under paths.data_dir or a folder"
            )
        return prepare_task(load_task(data_dir, task), cache_dir, seed=split_seed, predict=predict).public_dir
    path = path.resolve()
    if not (path / "task.json").is_file():
        raise PipesynthError(
            f"'{path}' holds no task.json", "pass a task folder (task.json, description.md, raw/)"
        )
    if (path / "train.csv").is_file() and (path / "sample_submission.csv").is_file():
        if predict:
            raise PipesynthError(
                f"'{path}' is a prepared public folder; mode=predict needs the task folder",
                "pass task=<the folder holding task.json and raw/>",
            )
        return path  # already a prepared public folder
    return prepare_task(
        load_task(path.parent, path.name), cache_dir, seed=split_seed, predict=predict
    ).public_dir


def generate(cfg: DictConfig) -> dict[str, Any]:
    """Generate a solution for `cfg.task`; returns the generation summary (also printed)."""
    from src.pipeline.generate import Pipeline

    if cfg.get("task") in (None, "", "???"):
        raise PipesynthError("no task given", "run python -m src.generate task=<slug or task folder>")
    mode = str(cfg.get("mode") or "evaluate")
    if mode not in MODES:
        raise PipesynthError(f"unknown mode '{mode}'", f"use mode={' or mode='.join(MODES)}")
    public_dir = resolve_public_dir(
        cfg.task, cfg.paths.data_dir, cfg.paths.cache_dir, int(cfg.split_seed), predict=mode == "predict"
    )
    out_dir = Path(cfg.paths.output_dir)
    pipeline = Pipeline.from_config(cfg)
    result = pipeline.run(public_dir, out_dir, seed=int(cfg.seed))
    summary = result.summary()
    summary["instruction"] = result.instruction
    summary["mode"] = mode
    summary["method"] = cfg.get("method")  # pipesynth | paper (conf/method/)
    if mode == "predict":
        from src.pipeline.predict import predict

        summary["predict"] = predict(result, public_dir, pipeline.sandbox)
    (out_dir / "generation_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    from src.reporting.runlog import RunLogger

    RunLogger(cfg, out_dir).log_generation(cfg, summary, out_dir)  # W&B / CSV run (logger=none: nothing)
    print(
        f"\n=== chosen instruction ({result.task}, rank {result.rank}, {pipeline.config.get('refine')}) ==="
    )
    print(result.instruction.strip())
    notes = provenance_notes(result)
    if notes:
        print("\n--- notes ---")
        print("\n".join(f"- {note}" for note in notes))
    score = "n/a" if result.validation_score is None else f"{result.validation_score:.6g}"
    print(
        f"\nstatus={result.status} validation_{result.journal.metric}={score} "
        f"seconds={result.timings.get('total_s')} solution={result.solution_path}"
    )
    if mode == "predict":
        print(
            f"predictions: {summary['predict']['submission']} (fitted on every labelled row)\n"
            f"rerun standalone: cd {out_dir} && python solution.py --data data"
        )
    return summary


def provenance_notes(result: Any) -> list[str]:
    """What the user should know about the chosen solution: the notes of the chosen script and of its parent
    instruction (a malformed fallback, a default plan, substitutions of unavailable models), once each."""
    journal = result.journal
    notes: list[str] = []
    node = journal[journal.chosen] if journal.chosen else None
    while node is not None:
        notes.extend(f"{node.stage} {node.id}: {note}" for note in node.notes)
        notes.extend(
            f"{node.stage} {node.id}: {sub.get('requested')} -> {sub.get('replacement')} ({sub.get('reason')})"
            for sub in node.substitutions
        )
        node = journal[node.parent] if node.parent else None
    notes.extend(result.notes)
    return list(dict.fromkeys(notes))


def _rewrite_task_path(argv: list[str]) -> list[str]:
    """`task=<path>` also sets `name=<folder name>`, so the run folder is outputs/generate/<folder name>/..."""
    out = list(argv)
    names = [a for a in argv if a.startswith("name=")]
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "task" and "/" in value and not names:
            path = Path(value).expanduser()
            name = path.parent.name if path.name == "public" else path.name
            out.append(f"name={name or 'task'}")
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    generate(cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_rewrite_task_path(sys.argv[1:])]
    main()
