"""Goal benchmark of the search: `generate` against `baseline_gbdt` on the dev suite's like-for-like tasks.

    flock /tmp/pipesynth-heavy.lock .venv/bin/python benchmarks/suite_gain.py                 # every task
    flock /tmp/pipesynth-heavy.lock .venv/bin/python benchmarks/suite_gain.py --tasks playground-series-s3e22
    .venv/bin/python benchmarks/suite_gain.py --budget-s 600                                 # a larger budget
    .venv/bin/python benchmarks/suite_gain.py --split-seeds 0 1 2                            # three splits

Like-for-like tasks are those of the suite (conf/suite/dev.yaml) with a leaderboard and no leaderboard flag in
their conf/task_overrides/<slug>.yaml (a flagged leaderboard — rolling, leaked, a different test set — cannot
rank a score fairly). Both solutions run in the same invocation, through `src.evaluate.evaluate`, on the same
public/private split (split_seed 0), in the sandbox; scores come from the grader, positions from the real
leaderboard.

What `generate` uses here: the scripted LLM (`llm=scripted`, empty replies), so the instruction stage falls back
to the data type's default plan and the benchmark does not depend on a language model; execution refinement;
the compiler coder; the search at its default config (conf/search/tree.yaml) unless --budget-s / --max-nodes
are given. Any gain over baseline_gbdt therefore comes from the search (families, hyperparameters, feature steps
and ensembles chosen on inner validation), not from task-specific code or an LLM.

Records go to outputs/benchmarks/suite_gain/<solution>[-<budget>][-split<seed>]/results.jsonl and are resumed: run it per task
(each under the heavy lock), then once more without --tasks to print the whole table. It prints one line per
task and solution (position of teams, % beaten, test score, inner-validation score, seconds), the medians, and,
then `median_beaten_gain_vs_gbdt=<points>` (percentage points of teams beaten, median over tasks; with
several --split-seeds, the mean over the splits of each split's median), `min_task_gain_vs_gbdt=<points>` (the
worst task's gain, mean over the splits) and, last, `max_task_seconds=<s>` (the slowest generate record, whole
task). Each generate line is followed by its stages' seconds. Each position prints its bootstrap
interval [low–high]: on a test of a few hundred rows it spans most of the leaderboard. Each gain over the
baseline prints its paired interval: both submissions scored on the same bootstrap resamples of the test rows
(src.tasks.rating.paired_beaten), so the interval says whether the gain is more than the test's luck; the
median's gain (per split, and the mean over splits) gets one the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from src.evaluate import evaluate  # noqa: E402
from src.pipeline.journal import Journal  # noqa: E402
from src.reporting.runlog import stage_seconds  # noqa: E402
from src.tasks.prepare import prepare_task  # noqa: E402
from src.tasks.rating import paired_beaten  # noqa: E402
from src.tasks.registry import load_suite  # noqa: E402


def evaluate_config(overrides: list[str]) -> Any:
    """The composed `evaluate` config (conf/evaluate.yaml) with `overrides`."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


def like_for_like(suite: str = "dev") -> list[str]:
    """Suite tasks with a leaderboard and no leaderboard flag (from the task overrides)."""
    cfg = evaluate_config([f"suite={suite}"])
    return [
        t.slug
        for t in load_suite(cfg.suite, cfg.paths.data_dir)
        if t.has_leaderboard and not t.leaderboard_flags
    ]


def run(solution: str, tasks: list[str], out: Path, extra: list[str]) -> list[dict[str, Any]]:
    """evaluate() one solution on `tasks` (resumed from `out`): its records."""
    overrides = [
        f"solution={solution}",
        f"tasks=[{','.join(tasks)}]",
        f"paths.output_dir={out}",
        "workers=1",  # one task at a time: the search uses the cores
        "progress=false",
        "show_table=false",
        "logger=none",
        f"name=suite_gain/{out.name}",  # the run name Hydra would set
        *extra,
    ]
    return [r for r in evaluate(evaluate_config(overrides))["records"] if r["task"] in tasks]


def beaten_samples(
    tasks: list[str], baseline: dict[str, Any], generated: dict[str, Any], split_seed: int
) -> dict[str, np.ndarray | None]:
    """Per task, (2, m) bootstrap samples of the % of teams beaten by baseline_gbdt (row 0) and generate (row 1),
    both submissions resampled on the same test rows (src.tasks.rating.paired_beaten); None where either did
    not grade."""
    cfg = evaluate_config([f"split_seed={split_seed}"])
    by_slug = {t.slug: t for t in load_suite(cfg.suite, cfg.paths.data_dir)}
    out: dict[str, np.ndarray | None] = {}
    for slug in tasks:
        records = (baseline.get(slug), generated.get(slug))
        if any(r is None or r.get("status") != "ok" for r in records):
            out[slug] = None
            continue
        prepared = prepare_task(by_slug[slug], cfg.paths.cache_dir, seed=split_seed)  # cached: the same split
        paths = [Path(r["execution"]["workdir"]) / "submission.csv" for r in records]  # type: ignore[index]
        out[slug] = paired_beaten(
            by_slug[slug], prepared, paths, n_resamples=int(cfg.rating.resamples), seed=int(cfg.rating.seed)
        )
    return out


def median_samples(per_task: dict[str, np.ndarray | None]) -> np.ndarray | None:
    """(2, m) bootstrap samples of the median over tasks of the % of teams beaten (row 0 baseline_gbdt, row 1
    generate), resample b of every task's test taken together; None when a task has no samples."""
    if not per_task or any(v is None for v in per_task.values()):
        return None
    m = min(v.shape[1] for v in per_task.values())  # type: ignore[union-attr]
    stacked = np.stack([v[:, :m] for v in per_task.values()])  # type: ignore[index]  # (tasks, 2, m)
    return np.median(stacked, axis=0)


def interval(samples: np.ndarray, confidence: float = 0.95, signed: bool = True) -> str:
    """`[low, high]`: the central `confidence` share of bootstrap samples."""
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return f"[{low:+.1f}, {high:+.1f}]" if signed else f"[{low:.1f}, {high:.1f}]"


def _validation(record: dict[str, Any]) -> float | None:
    value = record.get("validation_score")
    if value is None:
        value = (record.get("solution_meta") or {}).get("validation_score")
    return value


def _seconds(record: dict[str, Any]) -> float:
    return float(record.get("seconds") or 0.0)


def _interval(rating: dict[str, Any]) -> str:
    """` [low–high]`: the bootstrap position interval of the rating, when it has one."""
    low, high = rating.get("position_low"), rating.get("position_high")
    return f" [{low}–{high}]" if low is not None and high is not None else ""


def anytime(record: dict[str, Any], marks: tuple[float, ...] = (30, 60, 120, 180, 240, 300, 600)) -> str:
    """The best inner-validation score the search had after each number of seconds (from its journal): what
    a smaller budget would have kept, and whether the score was still climbing at the end."""
    path = (record.get("solution_meta") or {}).get("journal")
    if not path or not Path(path).is_file():
        return ""
    journal = Journal.load(path)
    nodes = [n for n in journal.nodes if n.stage == "search" and n.finished_at is not None]
    if not nodes:
        return ""
    start = min(n.created_at for n in nodes)
    parts = []
    for mark in marks:
        done = [
            n
            for n in nodes
            if n.finished_at - start <= mark and n.status == "ok" and n.validation_score is not None
        ]  # type: ignore[operator]
        if done:
            best = min(
                done,
                key=lambda n: n.validation_score if not journal.higher_is_better else -n.validation_score,
            )  # type: ignore[arg-type, operator]
            parts.append(f"{mark:.0f}s:{best.validation_score:.5g}({len(done)})")
        if nodes and max(n.finished_at for n in nodes) - start < mark:  # type: ignore[operator]
            break
    return "anytime best inner validation (nodes): " + " ".join(parts)


def measure(
    tasks: list[str],
    tag: str,
    generate_extra: list[str],
    split_seed: int,
    gains: dict[str, list[float]],
    seconds: list[float],
) -> tuple[dict[str, float], np.ndarray | None]:
    """Both solutions on one public/private split: prints one line per task and solution and the paired gain,
    and returns the median % of teams beaten per solution and bootstrap samples of both medians. Appends each
    task's point gain to `gains[task]` and each generate record's seconds to `seconds`."""
    split = [f"split_seed={split_seed}"]
    suffix = f"-split{split_seed}" if split_seed else ""  # split 0 keeps the folders runs before it wrote
    root = REPO / "outputs" / "benchmarks" / "suite_gain"
    baseline = {r["task"]: r for r in run("baseline_gbdt", tasks, root / f"baseline_gbdt{suffix}", split)}
    generated = {
        r["task"]: r for r in run("generate", tasks, root / f"{tag}{suffix}", generate_extra + split)
    }

    samples = beaten_samples(tasks, baseline, generated, split_seed)
    beaten: dict[str, list[float]] = {"baseline_gbdt": [], "generate": []}
    print(
        f"like-for-like tasks: {', '.join(tasks)}  (generate: scripted LLM, {tag}; split_seed {split_seed})"
    )
    for slug in tasks:
        for name, record in (("baseline_gbdt", baseline.get(slug)), ("generate", generated.get(slug))):
            rating = (record or {}).get("rating") or {}
            if rating.get("beaten_fraction") is None:
                print(f"{slug:44s} {name:14s} not rated ({(record or {}).get('status')})")
                beaten[name].append(0.0)
                continue
            beaten[name].append(100.0 * rating["beaten_fraction"])
            val = _validation(record)
            print(
                f"{slug:44s} {name:14s} position {rating['position']}{_interval(rating)}/{rating['teams']} "
                f"({100 * rating['beaten_fraction']:.1f}% beaten)  test {record['metric']}={record['score']:.5g}  "
                f"inner validation {'n/a' if val is None else f'{val:.5g}'}  {_seconds(record):.0f}s"
            )
            if name == "generate":
                seconds.append(_seconds(record))
                if stage_seconds(record):
                    print(f"{'':44s} {'':14s} stages: {stage_seconds(record)}")
            if name == "generate" and anytime(record):
                print(f"{'':44s} {'':14s} {anytime(record)}")
        pair = samples.get(slug)
        if len(beaten["generate"]) == len(beaten["baseline_gbdt"]):
            gains.setdefault(slug, []).append(beaten["generate"][-1] - beaten["baseline_gbdt"][-1])
        if pair is not None and len(beaten["generate"]) == len(beaten["baseline_gbdt"]):
            gain = beaten["generate"][-1] - beaten["baseline_gbdt"][-1]
            print(
                f"{slug:44s} {'gain':14s} {gain:+.1f} points, 95 % paired interval {interval(pair[1] - pair[0])}"
            )
    medians = {name: statistics.median(values) for name, values in beaten.items() if values}
    return medians, median_samples(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="a subset of the like-for-like tasks")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="search.budget_s (default: the config's)"
    )
    parser.add_argument(
        "--max-nodes", type=int, default=None, help="search.max_nodes (default: the config's)"
    )
    parser.add_argument("--search", default=None, help="search config (none | greedy | tree; default tree)")
    parser.add_argument(
        "--split-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="the tasks' public/private splits (split_seed; default 0). Several measure how much of a position "
        "is the split's luck: the last lines are then means over the splits of each split's median",
    )
    args = parser.parse_args()

    tasks = like_for_like()
    if args.tasks:
        unknown = sorted(set(args.tasks) - set(tasks))
        if unknown:
            raise SystemExit(f"not like-for-like dev tasks: {unknown} (choose from {tasks})")
        tasks = [t for t in tasks if t in args.tasks]
    generate_extra = [
        "llm@solution.llm=scripted",
        "solution.llm.default_reply=''",
        "++solution.sampling=free",
        "decide@solution.decide=model",  # no corpus vote: the benchmark stays independent of retrieval
        "prompt@solution.prompt=figure4",  # a raw-prompt template: the scripted client has no tokenizer
    ]
    tag = "generate"
    if args.search:
        generate_extra.append(f"search@solution.search={args.search}")
        tag += f"-{args.search}"
    if args.budget_s is not None:
        generate_extra.append(f"solution.search.budget_s={args.budget_s}")
        tag += f"-{int(args.budget_s)}s"
    if args.max_nodes is not None:
        generate_extra.append(f"solution.search.max_nodes={args.max_nodes}")
        tag += f"-{args.max_nodes}n"

    gains: dict[str, list[float]] = {}
    seconds: list[float] = []
    measured = {seed: measure(tasks, tag, generate_extra, seed, gains, seconds) for seed in args.split_seeds}
    per_split = {seed: medians for seed, (medians, _) in measured.items()}
    for seed, (medians, sampled) in measured.items():
        gain = medians["generate"] - medians["baseline_gbdt"]
        paired = ""
        if sampled is not None:
            paired = f" (95 % paired intervals: generate {interval(sampled[1], signed=False)}, gain {interval(sampled[1] - sampled[0])})"
        print(
            f"split_seed {seed}: median beaten baseline_gbdt {medians['baseline_gbdt']:.1f}, "
            f"generate {medians['generate']:.1f}, gain {gain:+.1f}{paired}"
        )
    split_samples = [sampled for _, sampled in measured.values()]
    if len(split_samples) > 1 and all(s is not None for s in split_samples):
        m = min(s.shape[1] for s in split_samples)  # type: ignore[union-attr]
        mean = np.mean([s[:, :m] for s in split_samples], axis=0)  # type: ignore[index]
        print(
            f"mean over the splits, 95 % paired intervals (test rows resampled): generate median "
            f"{interval(mean[1], signed=False)}, gain {interval(mean[1] - mean[0])}"
        )
    means = {
        name: statistics.mean(medians[name] for medians in per_split.values())
        for name in ("baseline_gbdt", "generate")
    }
    for name, value in means.items():
        print(f"median_beaten_{name}={value:.1f}")
    print(f"median_beaten_gain_vs_gbdt={means['generate'] - means['baseline_gbdt']:.1f}")
    # the worst task (its gain averaged over the splits) and the slowest generate record, whole task
    print(f"min_task_gain_vs_gbdt={min(statistics.mean(v) for v in gains.values()):.1f}")
    print(f"max_task_seconds={max(seconds, default=0.0):.0f}")


if __name__ == "__main__":
    main()
