"""Run a solution on every task of a suite in the sandbox, grade it against the private answers, rate it.

    python -m src.evaluate suite=dev solution=baseline_constant
    python -m src.evaluate suite=dev solution=baseline_gbdt tasks=[titanic,spooky-author-identification]
    python -m src.evaluate suite=dev solution=path/to/solution.py workers=2
    python -m src.evaluate suite=dev solution=generate            # the full pipeline, one generation per task

Records go to `<run dir>/results.jsonl`, one per (task, solution, seed); the run dir is stable per
(suite, solution), so re-running the same command resumes: finished records are skipped (`resume=false`
starts over). A score only ever comes from the grader comparing submission.csv with the private answers.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from src.config import user_errors_exit
from src.reporting.results import ResultsStore
from src.reporting.runlog import RunLogger
from src.reporting.summary import summary_table
from src.solutions.providers import SolutionProvider
from src.tasks.grading import grade
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.rating import rate
from src.tasks.registry import Task, load_suite

log = logging.getLogger(__name__)


def select_tasks(cfg: DictConfig) -> list[Task]:
    """The suite's tasks, narrowed to `tasks=[...]` when given (unknown names are an error, not skipped)."""
    tasks = load_suite(cfg.suite, cfg.paths.data_dir)
    if cfg.get("tasks"):
        wanted = [str(t) for t in cfg.tasks]
        by_slug = {t.slug: t for t in tasks}
        unknown = [slug for slug in wanted if slug not in by_slug]
        if unknown:
            from src.errors import PipesynthError

            raise PipesynthError(
                f"tasks {unknown} are not in suite '{cfg.suite.get('name', '?')}'",
                f"choose from {sorted(by_slug)}",
            )
        tasks = [by_slug[slug] for slug in wanted]
    return tasks


def run_one(
    task: Task,
    prepared: PreparedTask,
    provider: SolutionProvider,
    solution_name: str,
    seed: int,
    sandbox: Any,
    run_dir: Path,
) -> dict[str, Any]:
    """Build the solution, run it in the sandbox, grade and rate it: one result record."""
    started = time.perf_counter()
    task_dir = run_dir / "runs" / task.slug / f"seed{seed}"
    record: dict[str, Any] = {
        "task": task.slug,
        "solution": solution_name,
        "seed": seed,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    build = provider.build(prepared.public_dir, task_dir / "build", seed)
    record["solution_meta"] = build.meta
    result = sandbox.run(build.script, prepared.public_dir, task_dir / "work")
    record["execution"] = result.to_dict()
    status = result.status
    score = None
    reason = None
    if result.status == "ok":
        graded = grade(prepared, Path(result.workdir) / "submission.csv")
        score, reason = graded.score, graded.reason
        if not graded.valid:
            status = "invalid"
    else:
        reason = result.message or f"solution did not finish: {result.status}"
    record.update(status=status, score=score, invalid_reason=reason)
    rating = rate(task, score) if score is not None else None
    record["rating"] = rating.to_dict() if rating is not None else None
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run `cfg.solution` on the suite; returns {"results_path", "records", "skipped"}."""
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / "results.jsonl"
    if not cfg.resume and results_path.exists():
        results_path.rename(results_path.with_suffix(f".jsonl.{int(time.time())}.bak"))
    store = ResultsStore(results_path)

    tasks = select_tasks(cfg)
    provider: SolutionProvider = instantiate(cfg.solution)
    solution_name = provider.name
    sandbox = instantiate(cfg.sandbox)

    jobs = [(task, int(seed)) for task in tasks for seed in cfg.seeds]
    todo = [(task, seed) for task, seed in jobs if (task.slug, solution_name, seed) not in store]
    skipped = len(jobs) - len(todo)
    if skipped:
        log.info("resuming: %d of %d records already in %s", skipped, len(jobs), results_path)

    prepared = {task.slug: prepare_task(task, cfg.paths.cache_dir, seed=cfg.split_seed) for task, _ in todo}
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not cfg.progress,
        ) as progress,
        ThreadPoolExecutor(max_workers=max(1, int(cfg.workers))) as pool,
    ):
        bar = progress.add_task(f"{solution_name} on {len(tasks)} tasks", total=len(todo))
        futures = {
            pool.submit(
                run_one, task, prepared[task.slug], provider, solution_name, seed, sandbox, run_dir
            ): (
                task,
                seed,
            )
            for task, seed in todo
        }
        runs = RunLogger(cfg, run_dir)  # W&B / CSV run per record (logger=none: nothing)
        for future in as_completed(futures):
            record = future.result()
            store.add(record)
            runs.log_record(cfg, record, run_dir / "runs" / record["task"] / f"seed{record['seed']}" / "build")
            progress.advance(bar)

    records = sorted(
        (r for r in store.records if r["solution"] == solution_name), key=lambda r: (r["task"], r["seed"])
    )
    if todo:
        runs.log_suite(cfg, records, solution_name)
    if cfg.show_table:
        console.print(summary_table(records, title=f"{solution_name} — {results_path}"))
    return {"results_path": str(results_path), "records": records, "skipped": skipped}


def _rewrite_solution_path(argv: list[str]) -> list[str]:
    """`solution=path/to/x.py` -> `solution=file solution.path=/abs/x.py` (a config group cannot hold a path)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "solution" and (value.endswith(".py") or "/" in value):
            out += [
                "solution=file",
                f"solution.path={Path(value).resolve()}",
                f"solution.name={Path(value).stem}",
            ]
        else:
            out.append(arg)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    evaluate(cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_rewrite_solution_path(sys.argv[1:])]
    main()
