"""Does the model's text matter? The embedded model's instructions against scripted nonsense (issue 27 item 5).

    flock /tmp/pipesynth-heavy.lock .venv/bin/python benchmarks/llm_contribution.py                  # every task
    .venv/bin/python benchmarks/llm_contribution.py --tasks playground-series-s3e22 --seeds 0 --instructions base

Both arms are `+experiment=ablation` arms (conf/experiment/ablation.yaml: the model decides the family, no
search) with `refine=none`: `none/none/<instructions>` (default `adapter`: the embedded model with its newest
adapter; the arm errors when none is trained) against `none/none/nonsense` (conf/llm/nonsense.yaml, the
control), on the dev suite's like-for-like tasks, the same seeds and the same test resamples (each record's
`beaten_samples`, src.evaluate). A third run, `multi_role/none/<instructions>`, counts the multi-role refiner's
fallbacks. Records go to outputs/benchmarks/llm_contribution/<arm>/results.jsonl and are resumed.

Per task it prints both arms' % of teams beaten (mean over seeds) and the paired gain with its interval, then
the instruction stage's seconds. Last lines, exactly: `instruction_effect_points=<median over tasks of the
paired gain, points of teams beaten>` and `multi_role_fallback_rate=<fallbacks / refinements>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.suite_gain import evaluate_config, like_for_like  # noqa: E402
from src.evaluate import evaluate  # noqa: E402


def run_arm(refine: str, instructions: str, tasks: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """One ablation arm on `tasks` x `seeds` (resumed): its records."""
    name = f"{refine}-{instructions}"
    out = REPO / "outputs" / "benchmarks" / "llm_contribution" / name
    overrides = [
        "+experiment=ablation",
        f"+instructions={instructions}",
        f"refine@solution.refine={refine}",
        f"tasks=[{','.join(tasks)}]",
        f"seeds=[{','.join(map(str, seeds))}]",
        f"paths.output_dir={out}",
        "workers=1",
        "progress=false",
        "show_table=false",
        "logger=none",
        "fail_on_invalid=false",
        f"name=llm_contribution/{name}",
    ]
    return evaluate(evaluate_config(overrides))["records"]


def by_key(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["task"], int(r["seed"])): r for r in records}


def beaten(record: dict[str, Any] | None) -> float | None:
    rating = (record or {}).get("rating") or {}
    value = rating.get("beaten_fraction")
    return None if value is None else 100 * float(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="*", default=None, help="a subset of the like-for-like tasks")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--instructions", default="adapter", help="adapter | base | retrieval_only")
    args = parser.parse_args()
    tasks = args.tasks or like_for_like()

    model = by_key(run_arm("none", args.instructions, tasks, args.seeds))
    control = by_key(run_arm("none", "nonsense", tasks, args.seeds))
    refined = run_arm("multi_role", args.instructions, tasks, args.seeds)

    gains: dict[str, np.ndarray] = {}
    for task in tasks:
        pairs = []
        for seed in args.seeds:
            a, b = model.get((task, seed)), control.get((task, seed))
            if a and b and a.get("beaten_samples") and b.get("beaten_samples"):
                pairs.append(np.asarray(a["beaten_samples"]) - np.asarray(b["beaten_samples"]))
        shown = [beaten(model.get((task, s))) for s in args.seeds]
        ctrl = [beaten(control.get((task, s))) for s in args.seeds]
        line = f"{task:44s} {args.instructions} {_mean(shown)}% beaten   nonsense {_mean(ctrl)}% beaten"
        if pairs and len({len(p) for p in pairs}) == 1:
            gains[task] = np.mean(np.stack(pairs), axis=0)  # per resample, mean over seeds
            low, high = np.percentile(gains[task], [2.5, 97.5])
            line += f"   gain {gains[task].mean():+.1f} [{low:+.1f}, {high:+.1f}]"
        else:
            line += "   gain n/a (an arm did not grade)"
        print(line)
        seconds = [
            ((model.get((task, s)) or {}).get("solution_meta") or {}).get("timings", {}).get("instruct_s")
            for s in args.seeds
        ]
        seconds = [float(x) for x in seconds if x is not None]
        if seconds:
            print(
                f"{'':44s} instruction stage {statistics.mean(seconds):.0f}s per task ({args.instructions})"
            )

    refinements = sum(
        int(((r.get("solution_meta") or {}).get("refine") or {}).get("refinements") or 0) for r in refined
    )
    fallbacks = sum(
        int(((r.get("solution_meta") or {}).get("refine") or {}).get("fallbacks") or 0) for r in refined
    )
    if gains:
        stacked = np.stack(list(gains.values()))
        median = np.median(stacked, axis=0)  # per resample: the median task's gain
        low, high = np.percentile(median, [2.5, 97.5])
        print(
            f"median paired gain over {len(gains)} tasks: {np.median(stacked.mean(axis=1)):+.1f} [{low:+.1f}, {high:+.1f}]"
        )
    print(f"multi-role refinements {refinements}, fallbacks {fallbacks}")
    effect = float(np.median([g.mean() for g in gains.values()])) if gains else float("nan")
    print(f"instruction_effect_points={effect:.1f}")
    print(f"multi_role_fallback_rate={fallbacks / refinements if refinements else float('nan'):.2f}")


def _mean(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.mean(present):.1f}" if present else "n/a"


if __name__ == "__main__":
    main()
