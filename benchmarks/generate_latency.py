"""Generation latency: seconds from a task description to solution.py on CPU with SmolLM2-135M + its adapter.

    python benchmarks/generate_latency.py                                  # conf/generate.yaml defaults
    python benchmarks/generate_latency.py refine=none verify=never         # the paper's path: rank-1 -> code
    python benchmarks/generate_latency.py threads=1                        # torch threads (default auto: idle cores)
    python benchmarks/generate_latency.py --tasks titanic,house-prices-advanced-regression-techniques k=1
    python benchmarks/generate_latency.py llm.adapter=outputs/train/qlora_smollm2_cpu/<time>/adapter

Arguments after the options are Hydra overrides of conf/generate.yaml. The model (newest qlora_smollm2_cpu
adapter, else the base model — the line `adapter=` says which) is loaded once and timed apart from the
per-solution time; the LLM response cache is off, so every token is really generated. Per task it prints the
stages (instructions, refinement, coding, verification), tokens and status.

Baseline, measured in the same run on the first task's k instruction prompts: the plain way to sample from a
fine-tuned adapter — transformers `generate(do_sample=True)` on the unmerged peft model, one prompt at a time,
same temperature and max tokens (`--no-baseline` skips it). The pipeline's instruction stage (adapter merged
into the fp32 weights, all ranks in one batch) is compared by completion tokens per second:
`instruct_tokens_per_s_ratio_vs_unbatched_peft=<ours / baseline>`.

The last line is `seconds_per_solution=<mean seconds per task>` (goal <= 60, the paper's figure).
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

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.generate import resolve_public_dir  # noqa: E402
from src.llm.local import LocalClient  # noqa: E402
from src.pipeline.generate import GenerationResult, Pipeline  # noqa: E402
from src.pipeline.instruct import inner_client  # noqa: E402

DEFAULT_TASKS = ["titanic", "house-prices-advanced-regression-techniques", "spooky-author-identification"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated dev task slugs")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched peft baseline")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/generate.yaml")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

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
        f"verify={pipeline.config['verify']} threads={torch.get_num_threads()} ({cfg.threads})"
    )
    print(f"model_load_s={load_s:.2f}")

    totals, first = [], None
    for task, public in publics.items():
        result = pipeline.run(public, out_root / task, seed=int(cfg.seed))
        first = first or result
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
    if not args.no_baseline and first is not None and hasattr(model, "model_cfg"):
        ours = instruct_tokens_per_s(first)
        base = unbatched_peft_tokens_per_s(model, first, cfg)
        print(f"instruct_tokens_per_s: ours={ours:.1f} unbatched_peft={base:.1f} ({first.task})")
        print(f"instruct_tokens_per_s_ratio_vs_unbatched_peft={ours / base:.3f}")
    print(f"seconds_per_solution={statistics.fmean(totals):.2f}")


def instruct_tokens_per_s(result: GenerationResult) -> float:
    """Completion tokens per second of the pipeline's instruction stage (first attempts only, one batch)."""
    first_round = [n for n in result.journal.by_stage("instruction") if n.attempt == 0]
    tokens = sum(int(n.llm["completion_tokens"]) for n in first_round)
    seconds = sum(float(n.llm["seconds"]) for n in first_round)
    return tokens / seconds


def unbatched_peft_tokens_per_s(client: LocalClient, result: GenerationResult, cfg: DictConfig) -> float:
    """The baseline: the same prompts through the unmerged peft model, one `generate` call each."""
    from peft import PeftModel

    from src.training.base_models import load_base_model

    model, tok = load_base_model(client.model_cfg, None, cache_dir=client.cache_dir)
    if client.adapter_path is not None:
        model = PeftModel.from_pretrained(model, str(client.adapter_path))
    model.eval()
    torch.manual_seed(int(cfg.seed))
    tokens, seconds = 0, 0.0
    for prompt in result.journal.meta["instruction_prompts"]:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=True)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **ids,
                do_sample=True,
                temperature=float(cfg.temperature),
                top_p=1.0,
                max_new_tokens=int(cfg.max_tokens),
                pad_token_id=tok.pad_token_id,
            )
        seconds += time.perf_counter() - start
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens / seconds


if __name__ == "__main__":
    main()
