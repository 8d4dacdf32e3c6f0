"""How the rating interval narrows with test size, and what the bootstrap costs: the basis of `max_test_rows`.

    flock /tmp/pipesynth-heavy.lock .venv/bin/python benchmarks/rating_interval.py
    .venv/bin/python benchmarks/rating_interval.py --tasks playground-series-s3e18 --sizes 1000 5000 --resamples 500

For every dev task with a leaderboard: prepare it with half the labelled rows as test (no row cap), run the
`baseline_gbdt` solution in the sandbox once, grade it, then bootstrap its graded test rows at each test size m
(m rows drawn with replacement from the test rows: the spread a test of m rows from the same distribution
would give, for the same fitted model) and place the 95 % interval on the real leaderboard. Printed per task
and size: the interval in positions, its width as percentage points of teams, and whether the medal is certain.

Then the choice. The width shrinks about as 1/sqrt(m), so for each task the rows its interval needs to span at
most `--target-points` points of teams (default 10) are extrapolated from its two largest sizes; the default
`max_test_rows` is the largest of those over the tasks, rounded up to a multiple of 5,000 and printed as
`chosen_max_test_rows=<m>` (with the median-based figure beside it). Last, the speed of the vectorised bootstrap
(Metric.resampled) against the named baseline `loop` (the metric function called once per resample) on each
task's rows, printed per task and, last, as `bootstrap_speedup_vs_loop=<median ratio>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from src.solutions.providers import CompilerBaseline  # noqa: E402
from src.tasks.grading import grade  # noqa: E402
from src.tasks.metrics import get_metric  # noqa: E402
from src.tasks.prepare import prepare_task  # noqa: E402
from src.tasks.rating import bootstrap_counts, bootstrap_scores, rate  # noqa: E402
from src.tasks.registry import load_suite  # noqa: E402

SIZES = [1000, 2500, 5000, 10000]


def _graded(task, work: Path, sandbox) -> tuple:  # noqa: ANN001 - benchmark glue
    # the largest test the data allows: half the labelled rows, no cap (an official test stays as it is)
    task.split = {**task.split, "test_fraction": 0.5, "max_test_rows": None}
    prepared = prepare_task(task, work / "cache", seed=0)
    build = CompilerBaseline().build(prepared.public_dir, work / task.slug / "build", 0)
    started = time.perf_counter()
    result = sandbox.run(build.script, prepared.public_dir, work / task.slug / "work")
    seconds = time.perf_counter() - started
    if result.status != "ok":
        return prepared, None, seconds
    return prepared, grade(prepared, Path(result.workdir) / "submission.csv"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tasks", nargs="*", default=None, help="dev task slugs (default: all with a leaderboard)"
    )
    parser.add_argument("--sizes", nargs="*", type=int, default=SIZES)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--target-points", type=float, default=10.0)
    args = parser.parse_args()

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["name=bench/rating_interval", "logger=none"])
    tasks = [t for t in load_suite(cfg.suite, cfg.paths.data_dir) if t.has_leaderboard]
    if args.tasks:
        tasks = [t for t in tasks if t.slug in args.tasks]
    sandbox = instantiate(cfg.sandbox)

    widths: dict[int, list[float]] = {m: [] for m in args.sizes}
    needed: dict[str, float] = {}
    speed: list[tuple[str, str, int, float, float]] = []
    print(f"{'task':42} {'n_test':>6} {'m':>6} {'score [95%]':>28} {'position [95%]':>22} {'width':>7} medal")
    with tempfile.TemporaryDirectory(prefix="rating_interval_") as tmp:
        for task in tasks:
            prepared, graded, seconds = _graded(task, Path(tmp), sandbox)
            if graded is None or not graded.valid:
                print(f"{task.slug:42} not graded ({graded.reason if graded else 'run failed'})")
                continue
            metric = get_metric(task.metric)
            point = rate(task, graded.score)
            print(
                f"{task.slug:42} {prepared.n_test:>6} {'—':>6} {graded.score:>28.5g} "
                f"{point.position:>9}/{point.teams:<12} {'':>7} {point.medal or '—'} (run {seconds:.0f} s)"
            )
            task_widths = {}
            for m in args.sizes:
                samples = bootstrap_scores(
                    metric, graded.y_true, graded.y_pred, args.resamples, seed=0, size=m
                )
                rating = rate(task, graded.score, samples)
                width = 100.0 * (rating.position_high - rating.position_low) / rating.teams
                widths[m].append(width)
                task_widths[m] = width
                medal = rating.medal or "none"
                certain = "certain" if rating.medal_certain else f"p={rating.medal_probs[medal]:.2f}"
                print(
                    f"{'':42} {'':>6} {m:>6} {f'[{rating.score_low:.5g}, {rating.score_high:.5g}]':>28} "
                    f"{f'[{rating.position_low}–{rating.position_high}]':>22} {width:>6.1f}% {medal} ({certain})"
                )
            big = sorted(args.sizes)[-2:]
            # width ~ c / sqrt(m): c from the two largest sizes (the small ones hit the leaderboard's ends)
            c = statistics.mean(task_widths[m] * m**0.5 for m in big)
            needed[task.slug] = (c / args.target_points) ** 2
            speed.append((task.slug, metric.name, prepared.n_test, *_timings(metric, graded, args.resamples)))

    print()
    print("median interval width (percentage points of teams) by test size:")
    for m in args.sizes:
        if widths[m]:
            median = statistics.median(widths[m])
            print(f"  m={m:>6}: median {median:5.1f}  max {max(widths[m]):5.1f}  over {len(widths[m])} tasks")
    print(f"test rows for an interval of <= {args.target_points:g} points (extrapolated as 1/sqrt(m)):")
    for slug, rows in sorted(needed.items(), key=lambda kv: -kv[1]):
        print(f"  {slug:42} {rows:>9.0f}")
    if needed:
        step = 5000
        worst = int(-(-max(needed.values()) // step) * step)
        median = int(-(-statistics.median(needed.values()) // step) * step)
        print(f"median task needs <= {median} rows; chosen for the worst task:")
        print(f"chosen_max_test_rows={worst}")

    print()
    for slug, name, n, fast, loop in speed:
        print(
            f"bootstrap {args.resamples} x {n:>5} rows {slug:42} {name:20} vectorised {fast:6.3f} s  loop {loop:6.2f} s"
        )
    if speed:
        print(f"bootstrap_speedup_vs_loop={statistics.median(loop / fast for *_, fast, loop in speed):.1f}")


def _timings(metric, graded, resamples: int) -> tuple[float, float]:  # noqa: ANN001
    """Seconds for `resamples` bootstrap scores: vectorised, and the per-resample loop (timed on 100, scaled)."""
    y_true, y_pred = graded.y_true, graded.y_pred
    n = len(y_true)
    started = time.perf_counter()
    bootstrap_scores(metric, y_true, y_pred, resamples, seed=0)
    fast = time.perf_counter() - started
    loops = min(resamples, 100)
    counts = bootstrap_counts(n, loops, seed=0)
    started = time.perf_counter()
    for row_counts in counts:
        rows = np.repeat(np.arange(n), row_counts)
        metric(y_true[rows], y_pred[rows])
    return fast, (time.perf_counter() - started) * resamples / loops


if __name__ == "__main__":
    main()
