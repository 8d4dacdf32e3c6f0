"""Generation latency: seconds from a task description to solution.py on CPU with SmolLM2-135M + its adapter.

    python benchmarks/generate_latency.py                                  # conf/generate.yaml defaults
    python benchmarks/generate_latency.py refine=none verify=never         # the paper's path: rank-1 -> code
    python benchmarks/generate_latency.py --tasks titanic,house-prices-advanced-regression-techniques k=1
    python benchmarks/generate_latency.py llm.adapter=outputs/train/qlora_smollm2_cpu/<time>/adapter

Arguments after the options are Hydra overrides of conf/generate.yaml. The model (newest qlora_smollm2_cpu
adapter, else the base model — the line `adapter=` says which) is loaded once and timed apart from the
per-solution time; the LLM response cache is off, so every token is really generated. Per task it prints the
stages (instructions, refinement, coding, verification), tokens and status; the last line is
`seconds_per_solution=<mean seconds per task>` (goal <= 60, the paper's figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from src.generate import resolve_public_dir  # noqa: E402
from src.pipeline.generate import Pipeline  # noqa: E402
from src.pipeline.instruct import inner_client  # noqa: E402

DEFAULT_TASKS = ["titanic", "house-prices-advanced-regression-techniques", "spooky-author-identification"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated dev task slugs")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (2+ only on an idle machine)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/generate.yaml")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

    import torch

    torch.set_num_threads(args.threads)
    out_root = Path(tempfile.mkdtemp(prefix="generate_latency-"))
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "generate",
            overrides=[
                f"task={tasks[0]}",
                f"paths.output_dir={out_root}",
                "llm.cache.mode=off",
                "llm.device=cpu",
                *args.overrides,
            ],
        )
    publics = {
        t: resolve_public_dir(t, cfg.paths.data_dir, cfg.paths.cache_dir, int(cfg.split_seed)) for t in tasks
    }

    start = time.perf_counter()
    pipeline = Pipeline.from_config(cfg)
    model = inner_client(pipeline.client)
    if hasattr(model, "load"):
        model.load()
    load_s = time.perf_counter() - start
    print(f"model={pipeline.config['llm']}")
    print(f"adapter={getattr(model, 'adapter_path', None) or 'none (base model)'}")
    print(
        f"refine={pipeline.config['refine']} coder={pipeline.config['coder']} k={pipeline.config['k']} "
        f"verify={pipeline.config['verify']} threads={args.threads}"
    )
    print(f"model_load_s={load_s:.2f}")

    totals = []
    for task, public in publics.items():
        result = pipeline.run(public, out_root / task, seed=int(cfg.seed))
        t = result.timings
        usage = result.llm_usage
        totals.append(t["total_s"])
        stages = " ".join(f"{k}={v:.1f}" for k, v in t.items() if k != "total_s")
        print(
            f"{task}: total_s={t['total_s']:.1f} {stages} status={result.status} rank={result.rank} "
            f"completion_tokens={usage['completion_tokens']} llm_s={usage['seconds']:.1f} "
            f"nodes={result.journal.summary()}"
        )
    print(f"outputs={out_root}")
    print(f"seconds_per_solution={statistics.fmean(totals):.2f}")


if __name__ == "__main__":
    main()
