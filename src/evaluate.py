"""Run a solution on every task of a suite in the sandbox, grade it against the private answers, rate it.

    python -m src.evaluate suite=dev solution=baseline_constant
    python -m src.evaluate suite=dev solution=baseline_gbdt tasks=[titanic,spooky-author-identification]
    python -m src.evaluate suite=dev solution=path/to/solution.py workers=2
    python -m src.evaluate suite=dev solution=generate            # the full pipeline, one generation per task

Records go to `<run dir>/results.jsonl`, one per (task, solution, seed); the run dir is stable per
(suite, solution), so re-running the same command resumes: finished records are skipped (`resume=false`
starts over). A score only ever comes from the grader comparing submission.csv with the private answers.

Each record (interface D) holds status ok | invalid | failed | error and `error` (one line), the score, the
inner-validation score of a generated solution (`validation_score`) and its gap to the test score, and the
rating with its bootstrap interval (`position_low`/`position_high`, `medal_probs`, `medal_certain`; settings
in `rating:`). A task that cannot be loaded or prepared, or whose run raises, gets an `error` record and the
others run; the exit code is 1 when any task errored, and a re-run retries just those.
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
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from src.config import user_errors_exit
from src.errors import PipesynthError
from src.reporting.results import ResultsStore, inputs_digest, mean_beaten, record_key
from src.reporting.runlog import RunLogger, stage_seconds
from src.reporting.summary import summary_table
from src.sandbox.inputs import overlay_inputs
from src.solutions.providers import SolutionProvider
from src.tasks.grading import grade
from src.tasks.metrics import get_metric
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.rating import beaten_fractions, bootstrap_scores, rate, read_leaderboard
from src.tasks.registry import Task, load_suite

log = logging.getLogger(__name__)


def wanted_tasks(value: Any) -> list[str]:
    """`tasks=` as a list of slugs: `tasks=[a,b]`, `tasks=a` and `tasks=a,b` alike (never one slug per letter)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(t) for t in value]


def select_tasks(cfg: DictConfig, errors: dict[str, str] | None = None) -> list[Task]:
    """The suite's tasks, or `tasks=[...]`: any task folder under paths.data_dir, in the suite or not (the suite's
    split defaults and overrides apply). A name with no folder there is an error, not skipped.

    errors: when given, a listed task whose folder or config is broken is left out and its message stored.
    """
    broken: dict[str, str] = {}
    wanted = wanted_tasks(cfg.get("tasks"))
    suite = cfg.suite
    if wanted:
        data_dir = Path(str(cfg.paths.data_dir))
        unknown = [slug for slug in wanted if not (data_dir / slug).is_dir()]
        if unknown:
            found = sorted(p.parent.name for p in data_dir.glob("*/task.json"))
            raise PipesynthError(
                f"tasks {unknown} have no folder in paths.data_dir={data_dir}",
                f"choose from the task folders there {found}, or point paths.data_dir at the folder holding "
                f"<slug>/task.json (docs/tasks.md; `python -m src.task init` makes one)",
            )
        suite = OmegaConf.merge(suite, {"tasks": wanted})
    tasks = load_suite(suite, cfg.paths.data_dir, errors=broken if errors is not None else None)
    if errors is not None:
        errors.update(broken)
    return tasks


def _one_line(err: BaseException) -> str:
    """A user-facing reason: a PipesynthError as written, anything else as its type and first line."""
    if isinstance(err, PipesynthError):
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _base_record(slug: str, solution_name: str, seed: int, task: Task | None) -> dict[str, Any]:
    return {
        "task": slug,
        "solution": solution_name,
        "seed": seed,
        "metric": task.metric if task else None,
        "higher_is_better": task.higher_is_better if task else None,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def error_record(
    slug: str, solution_name: str, seed: int, reason: str, task: Task | None = None, stage: str = "run"
) -> dict[str, Any]:
    """The record of a task that could not be evaluated (status `error`): the suite goes on without it."""
    return {
        **_base_record(slug, solution_name, seed, task),
        "status": "error",
        "error": f"{stage}: {reason}",
        "score": None,
        "invalid_reason": None,
        "validation_score": None,
        "rating": None,
        "seconds": 0.0,
    }


def validation_gap(record: dict[str, Any]) -> float | None:
    """How much better the inner validation scored than the test (> 0: the inner validation was optimistic)."""
    val, test = record.get("validation_score"), record.get("score")
    if val is None or test is None:
        return None
    return float(val - test) if record.get("higher_is_better") else float(test - val)


def run_one(
    task: Task,
    prepared: PreparedTask,
    provider: SolutionProvider,
    solution_name: str,
    seed: int,
    sandbox: Any,
    run_dir: Path,
    rating_cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the solution, run it in the sandbox, grade and rate it: one result record.

    status: ok (graded) | invalid (ran, but no submission or one that cannot be scored) | failed (the script
    did not finish: crash, timeout, memory; `execution.status` says which). An exception in our own code is
    left to the caller, which records status `error`.
    """
    rating_cfg = dict(rating_cfg or {})
    started = time.perf_counter()
    task_dir = run_dir / "runs" / task.slug / f"seed{seed}"
    record = _base_record(task.slug, solution_name, seed, task)
    build = provider.build(prepared.public_dir, task_dir / "build", seed)
    record["solution_meta"] = build.meta
    record["validation_score"] = build.meta.get("validation_score")  # the inner validation (generation)
    inputs = prepared.public_dir
    if build.inputs is not None:  # the public files plus what the build derived from them (embeddings)
        inputs = overlay_inputs(prepared.public_dir, task_dir / "inputs", build.inputs)
    result = sandbox.run(build.script, inputs, task_dir / "work")
    record["execution"] = result.to_dict()
    score = None
    graded = None
    if result.status == "ok":
        graded = grade(prepared, Path(result.workdir) / "submission.csv")
        score, reason = graded.score, graded.reason
        status = "ok" if graded.valid else "invalid"
    else:  # the sandbox's "invalid" (exit 0, no submission.csv) is an invalid submission; the rest failed runs
        status = "invalid" if result.status == "invalid" else "failed"
        reason = result.message or f"solution did not finish: {result.status}"
    record.update(status=status, score=score, invalid_reason=reason, error=reason)
    rating = None
    if score is not None and graded is not None:
        samples = None
        if int(rating_cfg.get("resamples") or 0) > 0 and task.has_leaderboard:
            samples = bootstrap_scores(
                get_metric(task.metric),
                graded.y_true,  # type: ignore[arg-type]
                graded.y_pred,  # type: ignore[arg-type]
                n_resamples=int(rating_cfg["resamples"]),
                seed=int(rating_cfg.get("seed", 0)),
            )
        rating = rate(
            task,
            score,
            samples,
            confidence=float(rating_cfg.get("confidence", 0.95)),
            split_method=prepared.split_method,
        )
        if samples is not None and len(samples):
            # % of teams beaten on each of the seeded resamples (the same rows for every solution): two records of
            # a task subtract resample by resample, a paired gain (src.reporting.tables.ablation_effects)
            board, decimals = read_leaderboard(task)
            beaten = 100 * beaten_fractions(np.asarray(samples), board, get_metric(task.metric), decimals)
            record["beaten_samples"] = [round(float(b), 2) for b in beaten]
    record["rating"] = rating.to_dict() if rating is not None else None
    for key in ("position_low", "position_high", "medal_probs", "medal_certain"):
        record[key] = getattr(rating, key) if rating is not None else None
    record["validation_gap"] = validation_gap(record)
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def _guarded(task: Task, solution_name: str, seed: int, *args: Any) -> dict[str, Any]:
    """run_one(task, *args) with any exception turned into an `error` record: one task never stops the suite."""
    log.info("start %s (seed %d)", task.slug, seed)
    try:
        record = run_one(task, *args)
    except Exception as err:
        log.exception("%s (seed %d) raised", task.slug, seed)
        record = error_record(task.slug, solution_name, seed, _one_line(err), task)
    score = "-" if record.get("score") is None else f"{record['score']:.6g}"
    reason = record.get("invalid_reason") or record.get("error")
    log.info(
        "finish %s (seed %d): %s, %s %s, %.1f s%s",
        task.slug,
        seed,
        record["status"],
        record.get("metric"),
        score,
        float(record.get("seconds") or 0.0),
        f" — {reason}" if record["status"] != "ok" and reason else "",
    )
    return record


def suite_notes(records: list[dict[str, Any]]) -> list[str]:
    """Lines printed under the summary table: rating intervals, the validation gap, and every error."""
    lines = []
    for r in records:
        if r.get("position_low") is not None:
            rating, probs = r["rating"], r["medal_probs"]
            medal = rating.get("medal") or "no medal"
            odds = ", ".join(f"{m} {probs[m]:.2f}" for m in ("gold", "silver", "bronze", "none"))
            lines.append(
                f"{r['task']}: position {rating['position']} [{r['position_low']}–{r['position_high']}] "
                f"of {rating['teams']}, {medal} ({'certain' if r.get('medal_certain') else 'not certain'}; {odds})"
            )
    gaps = [(r["task"], g) for r in records if (g := validation_gap(r)) is not None]
    for slug, gap in gaps:
        rec = next(r for r in records if r["task"] == slug)
        lines.append(
            f"{slug}: inner validation {rec['validation_score']:.5g} vs test {rec['score']:.5g} "
            f"(gap {gap:+.4g}, > 0 = optimistic)"
        )
    for r in records:  # where each task's time went (generate.budget_s bounds the whole)
        if stages := stage_seconds(r):
            lines.append(f"{r['task']} (seed {r['seed']}) seconds: {stages}")
    refines = [(r.get("solution_meta") or {}).get("refine") or {} for r in records]
    refinements = sum(int(x.get("refinements") or 0) for x in refines)
    if refinements:
        fallbacks = sum(int(x.get("fallbacks") or 0) for x in refines)
        lines.append(f"refinement fallbacks: {fallbacks} of {refinements} refinements")
    missing = [r["task"] for r in records if r.get("status") == "ok" and r.get("validation_score") is None]
    if missing:
        lines.append(f"no inner-validation score recorded for: {', '.join(sorted(set(missing)))}")
    unscored = [r for r in records if r.get("status") in ("invalid", "failed")]
    if unscored:
        lines.append(f"{len(unscored)} record(s) without a score:")
        for r in unscored:
            workdir = (r.get("execution") or {}).get("workdir")
            where = f" — log: {Path(workdir) / 'sandbox.stderr.log'}" if workdir else ""
            lines.append(f"  {r['task']} (seed {r['seed']}) {r['status']}: {r.get('invalid_reason')}{where}")
    errors = [r for r in records if r.get("status") == "error"]
    if errors:
        lines.append(f"{len(errors)} task(s) errored (re-run the same command to retry them):")
        lines += [f"  {r['task']} (seed {r['seed']}): {r.get('error')}" for r in errors]
    return lines


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run `cfg.solution` on the suite; returns {"results_path", "records", "skipped", "errors"}.

    A task that cannot be loaded or prepared, or whose run raises, gets an `error` record with one reason and
    the other tasks run. Records with status `error` are retried on resume; the others are kept.
    """
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / "results.jsonl"
    if not cfg.resume and results_path.exists():
        results_path.rename(results_path.with_suffix(f".jsonl.{int(time.time())}.bak"))
    store = ResultsStore(results_path)

    broken: dict[str, str] = {}
    tasks = select_tasks(cfg, errors=broken)
    provider: SolutionProvider = instantiate(cfg.solution)
    solution_name = provider.name
    sandbox = instantiate(cfg.sandbox)
    rating_cfg = OmegaConf.to_container(cfg.rating, resolve=True) if cfg.get("rating") else {}
    run_logger = RunLogger(cfg, run_dir)  # W&B / CSV runs (logger=none: nothing)
    seeds = [int(seed) for seed in cfg.seeds]

    # an errored record is retried on resume (its cause may be fixed by now); every other status is kept while its
    # inputs are the same: an edited script, another solution config or a changed task folder runs again
    digests = {task.slug: inputs_digest(cfg.solution, provider, task, int(cfg.split_seed)) for task in tasks}
    kept = {
        record_key(r)
        for r in store.records
        if r.get("status") != "error" and r.get("inputs_digest") == digests.get(str(r["task"]))
    }

    def done(slug: str, seed: int) -> bool:
        return (slug, solution_name, seed) in kept

    for slug, reason in broken.items():
        for seed in seeds:
            store.add(error_record(slug, solution_name, seed, reason, stage="load"))
    jobs = [(task, seed) for task in tasks for seed in seeds]
    todo = [(task, seed) for task, seed in jobs if not done(task.slug, seed)]
    skipped = len(jobs) - len(todo)
    if skipped:
        log.info("resuming: %d of %d records already in %s", skipped, len(jobs), results_path)

    prepared: dict[str, PreparedTask] = {}
    for task in {task.slug: task for task, _ in todo}.values():
        try:
            prepared[task.slug] = prepare_task(task, cfg.paths.cache_dir, seed=cfg.split_seed)
        except Exception as err:  # e.g. no data, a bad split config: that task errors, the others run
            log.error("cannot prepare %s: %s", task.slug, _one_line(err))
            for seed in seeds:
                store.add(error_record(task.slug, solution_name, seed, _one_line(err), task, stage="prepare"))
    todo = [(task, seed) for task, seed in todo if task.slug in prepared]

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
        futures = [
            pool.submit(
                _guarded,
                task,
                solution_name,
                seed,
                *(prepared[task.slug], provider, solution_name, seed, sandbox, run_dir, rating_cfg),
            )
            for task, seed in todo
        ]
        for future in as_completed(futures):
            record = future.result()
            record["inputs_digest"] = digests[record["task"]]
            store.add(record)
            build_dir = run_dir / "runs" / record["task"] / f"seed{record['seed']}" / "build"
            run_logger.log_record(cfg, record, build_dir=build_dir)
            progress.advance(bar)

    wanted = {t.slug for t in tasks} | set(broken)
    records = sorted(
        (
            r
            for r in store.records
            if r["solution"] == solution_name and r["task"] in wanted and r["seed"] in seeds
        ),
        key=lambda r: (r["task"], r["seed"]),
    )
    errors = [r for r in records if r.get("status") == "error"]
    if todo or broken:  # a resume with nothing new to run logs no new suite run
        run_logger.log_suite(cfg, records, solution_name)
    if cfg.show_table:
        console.print(summary_table(records, title=f"{solution_name} — {results_path}"))
        for line in suite_notes(records):
            console.print(line, markup=False, highlight=False, soft_wrap=True)  # paths stay whole
    return {"results_path": str(results_path), "records": records, "skipped": skipped, "errors": errors}


def _rewrite_solution_path(argv: list[str]) -> list[str]:
    """`solution=path/to/x.py` -> `solution=file solution.path=/abs/x.py` (a config group cannot hold a path);
    `method=paper` -> `method@solution=paper` (the method is the generated solution's)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "method":  # the method belongs to the generated solution: method=paper
            out.append(f"method@solution={value}")
        elif sep and key == "solution" and (value.endswith(".py") or "/" in value):
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
def main(cfg: DictConfig) -> float:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    out = evaluate(cfg)
    unscored = [r for r in out["records"] if r.get("status") in ("invalid", "failed")]
    if (out["errors"] or (unscored and cfg.get("fail_on_invalid", True))) and not _in_multirun():
        # the records are kept (re-running retries the errored tasks); the exit code tells a script
        counts = f"{len(out['errors'])} errored, {len(unscored)} invalid or failed"
        print(
            f"pipesynth: {counts} (reasons above; records in {out['results_path']}); "
            "fail_on_invalid=false exits 0 for invalid or failed records",
            file=sys.stderr,
        )
        sys.exit(1)
    return mean_beaten(out["records"])  # the objective of hydra/sweeper=generation_optuna


def _in_multirun() -> bool:
    """True inside a Hydra sweep: one job's bad record must not stop the others (nor the sweeper)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_rewrite_solution_path(sys.argv[1:])]
    main()
