"""Training throughput: our Lightning loop against TRL's SFTTrainer, the HF Trainer and a plain PyTorch loop.

    python benchmarks/train_throughput.py --model tiny --steps 12
    python benchmarks/train_throughput.py --model smollm2 --steps 8 --threads 2

Every variant trains the SAME peft model (the 4-bit base + LoRA from conf/, gradient checkpointing on) on the
SAME batches: real Linguacodus pairs cut to exactly --seq-len tokens (prompt masked with -100, so there is no
padding and the order cannot change the work), batch size --batch-size, AdamW (lr 2e-4, wd 0.001), gradient
clipping 0.3, a constant schedule with warmup. Each variant runs in a fresh subprocess (same start, comparable
peak RSS) with --threads torch threads. The clock runs from the end of step --warmup to the end of the last
step: everything a framework does between steps (data loading, logging, callbacks) is inside it.

Variants:
  lightning       src.training.module.CausalLMFineTune in a Lightning Trainer (our training path)
  trl             trl.SFTTrainer on the pre-tokenised dataset (labels given)
  hf              transformers.Trainer
  plain           a bare loop: model(**batch).loss, backward, clip, step
  plain_selective the bare loop with our completion-only output head (src.training.module.completion_loss)

Prints one line per variant, then ratios, and last `tokens_per_s_ratio_vs_trl=<lightning / trl>`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = ("lightning", "trl", "hf", "plain", "plain_selective")
EXPERIMENT = {"tiny": "qlora_tiny", "smollm2": "qlora_smollm2_cpu"}
LR, WEIGHT_DECAY, CLIP, WARMUP_RATIO = 2e-4, 0.001, 0.3, 0.03


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _compose(model: str) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        # the whole training split (the experiments' subsets are smaller than some benchmarks need)
        overrides = [
            f"+experiment={EXPERIMENT[model]}",
            "paths.output_dir=/tmp/pipesynth-bench",
            "data.limit.train=null",
        ]
        return compose("train", overrides=overrides)


def fixed_length_examples(cfg: Any, tokenizer: Any, seq_len: int, count: int) -> list[dict[str, list[int]]]:
    """`count` corpus pairs (cycled if needed) cut to exactly `seq_len` tokens, labels -100 on the prompt."""
    from src.corpus.build import build_corpus
    from src.training.data import tokenize_pair

    rows = build_corpus(cfg, tokenizer=tokenizer)["train"]
    out: list[dict[str, list[int]]] = []
    for row in rows:
        ex = tokenize_pair(tokenizer, row["prompt"], row["completion"], row["description"], None)
        if ex is None or ex["length"] < seq_len or all(t == -100 for t in ex["labels"][:seq_len]):
            continue
        out.append({"input_ids": ex["input_ids"][:seq_len], "labels": ex["labels"][:seq_len]})
        if len(out) == count:
            break
    if not out:
        raise SystemExit(f"no corpus pair has {seq_len} tokens")
    while len(out) < count:
        out.append(out[len(out) % max(1, len(out))])
    return out


def build(model_name: str, threads: int) -> tuple[Any, Any, Any]:
    import torch

    from src.training.base_models import add_lora, load_base_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = _compose(model_name)
    model, tokenizer = load_base_model(cfg.model, cfg.quant, cfg.paths.cache_dir)
    model = add_lora(model, cfg.lora, gradient_checkpointing=bool(cfg.model.gradient_checkpointing))
    return cfg, model, tokenizer


class _Clock:
    """Wall time from the end of step `warmup` to the end of step `steps`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.t0: float | None = None
        self.t1: float | None = None

    def step_done(self, step: int) -> None:
        if step == self.warmup:
            self.t0 = time.perf_counter()
        if step == self.steps:
            self.t1 = time.perf_counter()

    @property
    def seconds(self) -> float:
        assert self.t0 is not None and self.t1 is not None, "the clock did not see both steps"
        return self.t1 - self.t0


def run_lightning(
    cfg: Any, model: Any, tokenizer: Any, data: list, args: argparse.Namespace, clock: _Clock
) -> list:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from src.training.callbacks import ThroughputMonitor
    from src.training.data import CompletionCollator
    from src.training.module import CausalLMFineTune

    losses: list[float] = []

    class ClockCallback(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            clock.step_done(trainer.global_step)

    module = CausalLMFineTune(
        model,
        {"_target_": "src.training.module.paged_adamw_32bit", "lr": LR, "weight_decay": WEIGHT_DECAY},
        {"_target_": "src.training.module.constant_with_warmup", "warmup_ratio": WARMUP_RATIO},
    )
    loader = DataLoader(
        data, batch_size=args.batch_size, shuffle=False, collate_fn=CompletionCollator(tokenizer.pad_token_id)
    )
    # the experiment's trainer config (Table 2 settings), with a CSV logger as in a real run
    trainer = instantiate(
        cfg.trainer,
        max_steps=args.steps,
        max_epochs=-1,
        log_every_n_steps=25,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=args.workdir,
        logger=pl.loggers.CSVLogger(args.workdir, name="csv"),
        callbacks=[ThroughputMonitor(), ClockCallback()],
    )
    trainer.fit(module, train_dataloaders=loader)
    losses = module.train_loss_curve()
    return losses


def _hf_args(args: argparse.Namespace, cls: Any, **extra: Any) -> Any:
    return cls(
        output_dir=args.workdir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=CLIP,
        optim="adamw_torch",
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=WARMUP_RATIO,  # a float < 1 is a ratio of the total steps
        logging_steps=25,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # already on in the model (same as the other variants)
        dataloader_num_workers=0,
        seed=0,
        **extra,
    )


def _hf_clock(clock: _Clock) -> Any:
    from transformers import TrainerCallback

    class ClockCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
            clock.step_done(state.global_step)

    return ClockCallback()


def run_hf(cfg: Any, model: Any, tokenizer: Any, data: list, args: argparse.Namespace, clock: _Clock) -> list:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from src.training.data import CompletionCollator

    collator = CompletionCollator(tokenizer.pad_token_id)

    def collate(features: list[dict]) -> dict:
        batch = collator(features)
        return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    trainer = Trainer(
        model=model,
        args=_hf_args(args, TrainingArguments, remove_unused_columns=False),
        train_dataset=Dataset.from_list(data),
        data_collator=collate,
        callbacks=[_hf_clock(clock)],
    )
    result = trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h] or [result.training_loss]


def run_trl(
    cfg: Any, model: Any, tokenizer: Any, data: list, args: argparse.Namespace, clock: _Clock
) -> list:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=_hf_args(args, SFTConfig, max_length=args.seq_len, packing=False),
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
        callbacks=[_hf_clock(clock)],
    )
    result = trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h] or [result.training_loss]


def _plain(
    model: Any, tokenizer: Any, data: list, args: argparse.Namespace, clock: _Clock, selective: bool
) -> list:
    import torch
    from torch.utils.data import DataLoader

    from src.training.data import CompletionCollator
    from src.training.module import completion_loss, constant_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = constant_with_warmup(optimizer, args.steps, WARMUP_RATIO)
    loader = DataLoader(
        data, batch_size=args.batch_size, shuffle=False, collate_fn=CompletionCollator(tokenizer.pad_token_id)
    )
    model.train()
    losses: list[torch.Tensor] = []
    step = 0
    while step < args.steps:
        for batch in loader:
            loss = completion_loss(model, batch, selective=selective)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step += 1
            clock.step_done(step)
            if step == args.steps:
                break
    return torch.stack(losses).tolist()


def child(args: argparse.Namespace) -> None:
    """One variant, in this process; prints one JSON line."""
    cfg, model, tokenizer = build(args.model, args.threads)
    data = fixed_length_examples(cfg, tokenizer, args.seq_len, args.steps * args.batch_size)
    rss_loaded = _rss_mb()
    clock = _Clock(args.warmup, args.steps)
    runner = {
        "lightning": run_lightning,
        "trl": run_trl,
        "hf": run_hf,
        "plain": lambda *a: _plain(*a[1:], selective=False),
        "plain_selective": lambda *a: _plain(*a[1:], selective=True),
    }[args.variant]
    losses = runner(cfg, model, tokenizer, data, args, clock)
    tokens = (args.steps - args.warmup) * args.batch_size * args.seq_len
    print(
        "RESULT "
        + json.dumps(
            {
                "variant": args.variant,
                "tokens_per_s": tokens / clock.seconds,
                "seconds": clock.seconds,
                "tokens": tokens,
                "peak_rss_mb": _peak_rss_mb(),
                "rss_after_load_mb": rss_loaded,
                "first_loss": float(losses[0]) if losses else None,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(EXPERIMENT), default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps before the clock starts")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per variant (interleaved); the best counts"
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="/tmp/pipesynth-bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    if args.variant:
        child(args)
        return

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "WANDB_MODE": "disabled",
    }
    results: dict[str, dict] = {}
    print(
        f"model={args.model} seq_len={args.seq_len} batch={args.batch_size} steps={args.steps} "
        f"(timed {args.steps - args.warmup}) threads={args.threads}",
        flush=True,
    )
    for _ in range(args.repeats):
        for variant in variants:  # interleaved, so a burst of load elsewhere hits every variant alike
            cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"variant {variant} failed (exit {proc.returncode})")
            res = json.loads(line[len("RESULT ") :])
            best = results.get(variant)
            if best is None or res["tokens_per_s"] > best["tokens_per_s"]:
                results[variant] = res
            print(
                f"{variant:16s} {res['tokens_per_s']:9.1f} tokens/s   peak RSS {res['peak_rss_mb']:7.0f} MB   "
                f"(after model load {res['rss_after_load_mb']:.0f} MB)   first loss {res['first_loss']:.4f}",
                flush=True,
            )
    ours = results.get("lightning")
    if ours:
        for other in ("hf", "plain", "plain_selective"):
            if other in results:
                print(
                    f"tokens_per_s_ratio_vs_{other}={ours['tokens_per_s'] / results[other]['tokens_per_s']:.3f}"
                )
        if "trl" in results:
            print(f"peak_rss_ratio_vs_trl={ours['peak_rss_mb'] / results['trl']['peak_rss_mb']:.3f}")
            print(f"tokens_per_s_ratio_vs_trl={ours['tokens_per_s'] / results['trl']['tokens_per_s']:.3f}")


if __name__ == "__main__":
    main()
