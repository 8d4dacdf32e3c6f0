"""Local inference backends: transformers (`llm=local`, the baseline) vs llama.cpp (`llm=llamacpp`).

    python benchmarks/local_backends.py                              # Qwen2.5-Coder-0.5B, 200 new tokens, 2 threads
    python benchmarks/local_backends.py --model smollm2_135m --max-tokens 300 --threads 1
    flock /tmp/pipesynth-heavy.lock python benchmarks/local_backends.py      # on the shared machine

Both clients get the same chat requests (three ML-task instruction prompts, temperature 0.7, fixed seeds,
`--max-tokens` new tokens; the response cache is off, so every token is generated). Per backend it prints the
load time (weights already converted/assembled in the cache; the one-off conversion is timed separately when
it happens), then tokens/s at batch 1 (one request) and for k=3 requests in one `complete` call (transformers
batches them in one `generate`; llama.cpp runs them one after another, sharing nothing but the KV-cache of
a common prefix). The ratios are llama.cpp over transformers, both measured in this run:
`tokens_per_s_ratio_vs_transformers_batch1=<x>` and `..._k3=<x>`, `load_s_ratio_vs_transformers=<x>`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from omegaconf import OmegaConf  # noqa: E402

from src.config import set_torch_threads  # noqa: E402
from src.llm.base import ChatRequest, user  # noqa: E402

TASKS = [
    "Titanic: predict which passengers survived from tabular data (age, sex, class, fare). Metric: accuracy.",
    "House prices: predict the sale price of homes from 79 tabular features. Metric: RMSE of log prices.",
    "Spooky author identification: predict the author of horror-story sentences. Metric: multi-class log loss.",
]
ASK = (
    "Write a solution plan for this machine-learning competition with three sections: "
    "## Preprocessing, ## Model architecture, ## Training.\n\n{task}"
)


def requests(max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=user(ASK.format(task=t)), temperature=0.7, max_tokens=max_tokens, seed=i, tag="bench"
        )
        for i, t in enumerate(TASKS)
    ]


def measure(name: str, client: Any, max_tokens: int, prepare: Any) -> dict[str, float]:
    """Load time, then tokens/s at batch 1 and for k=3 requests in one call."""
    start = time.perf_counter()
    prepare()  # one-off work (assembling / converting the weights); nothing when cached
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    client.load()
    load_s = time.perf_counter() - start
    reqs = requests(max_tokens)
    client.complete([ChatRequest(messages=user("Hi"), max_tokens=4, temperature=0.0)])  # warm-up
    start = time.perf_counter()
    [one] = client.complete(reqs[:1])
    b1_s = time.perf_counter() - start
    start = time.perf_counter()
    three = client.complete(reqs)
    k3_s = time.perf_counter() - start
    k3_tokens = sum(c.completion_tokens for c in three)
    out = {
        "prepare_s": prepare_s,
        "load_s": load_s,
        "batch1_tokens": one.completion_tokens,
        "batch1_tokens_per_s": one.completion_tokens / b1_s,
        "k3_tokens": k3_tokens,
        "k3_s": k3_s,
        "k3_tokens_per_s": k3_tokens / k3_s,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    print(
        f"{name:12s} prepare {prepare_s:6.1f}s  load {load_s:5.2f}s  batch1 {out['batch1_tokens_per_s']:6.1f} tok/s "
        f"({one.completion_tokens} tok)  k=3 {out['k3_tokens_per_s']:6.1f} tok/s ({k3_tokens} tok, {k3_s:.1f}s)  "
        f"peak RSS so far {out['peak_rss_gb']:.1f} GB",
        flush=True,
    )
    print(f"{name:12s} sample: {one.text[:160]!r}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen25_coder_05b", help="a conf/model name with a GGUF source")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--threads", default="2", help="threads for both backends (an int or auto)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / ".cache"))
    args = parser.parse_args()

    from src.llm.llamacpp import LlamaCppClient
    from src.llm.local import LocalClient
    from src.training.base_models import model_source

    model_cfg = OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{args.model}.yaml")
    threads = set_torch_threads(args.threads)
    source = model_source(model_cfg)
    # llama.cpp's threads spin-wait: more threads than idle cores is far slower, so say how busy the machine was
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"model={args.model} max_tokens={args.max_tokens} threads={threads} prompts={len(TASKS)} loadavg={load}",
        flush=True,
    )
    common = {"model": model_cfg, "cache_dir": args.cache_dir, "max_tokens": args.max_tokens}
    hf = measure(
        "transformers",
        LocalClient(adapter=None, device="cpu", batch_size=8, **common),
        args.max_tokens,
        lambda: source.materialize(args.cache_dir),
    )
    cpp = measure(
        "llama.cpp",
        LlamaCppClient(adapter=None, threads=threads, **common),
        args.max_tokens,
        lambda: source.gguf(args.cache_dir),
    )
    print(
        f"tokens_per_s_ratio_vs_transformers_batch1={cpp['batch1_tokens_per_s'] / hf['batch1_tokens_per_s']:.2f}"
    )
    print(f"tokens_per_s_ratio_vs_transformers_k3={cpp['k3_tokens_per_s'] / hf['k3_tokens_per_s']:.2f}")
    print(f"load_s_ratio_vs_transformers={cpp['load_s'] / hf['load_s']:.3f}")


if __name__ == "__main__":
    main()
