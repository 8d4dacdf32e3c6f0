"""Callbacks: throughput and memory, the final adapter export (and optional merge)."""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def peak_cuda_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


class ThroughputMonitor(pl.Callback):
    """Tokens/s (all tokens and completion tokens) and memory, logged every `log_every_n_steps`.

    Token counts come as plain ints from the collator; the timer brackets the training batches only (no
    validation, no checkpointing), and nothing here waits on the device except at logging time on CUDA.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.tokens = 0
        self.label_tokens = 0
        self.steps = 0
        self._window_tokens = 0
        self._window_seconds = 0.0
        self._t0: float | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._t0 is None:
            return
        every = max(1, trainer.log_every_n_steps)
        logging_now = (trainer.global_step % every == 0) and trainer.loggers
        if logging_now and torch.cuda.is_available():
            torch.cuda.synchronize()  # only here, so the window's time is real device time
        elapsed = time.perf_counter() - self._t0
        self._t0 = None
        self.train_seconds += elapsed
        self.tokens += int(batch["num_tokens"])
        self.label_tokens += int(batch["num_label_tokens"])
        self.steps += 1
        self._window_tokens += int(batch["num_tokens"])
        self._window_seconds += elapsed
        if logging_now:
            metrics = {
                "perf/tokens_per_s": self._window_tokens / max(self._window_seconds, 1e-9),
                "perf/peak_rss_mb": peak_rss_mb(),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
            }
            cuda = peak_cuda_mb()
            if cuda is not None:
                metrics["perf/peak_cuda_mb"] = cuda
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)
            self._window_tokens, self._window_seconds = 0, 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "train_batches_timed": self.steps,
            "train_seconds": round(self.train_seconds, 3),
            "tokens": self.tokens,
            "label_tokens": self.label_tokens,
            "tokens_per_s": round(self.tokens / self.train_seconds, 2) if self.train_seconds else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_cuda_mb": round(peak_cuda_mb(), 1) if peak_cuda_mb() is not None else None,
        }


class AdapterExport(pl.Callback):
    """At the end of training: peft `save_pretrained` + tokenizer + resolved config into `<run dir>/adapter/`;
    with `merge=True`, the adapter merged into a full-precision copy of the base in `<run dir>/merged/`."""

    def __init__(
        self,
        run_dir: str | Path,
        tokenizer: Any,
        cfg: DictConfig | None = None,
        merge: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.merge = merge
        self.adapter_dir: Path | None = None
        self.merged_dir: Path | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.adapter_dir = self.save_adapter(pl_module.model)
        if self.merge:
            self.merged_dir = self.save_merged(self.adapter_dir)

    def save_adapter(self, peft_model: Any) -> Path:
        out = self.run_dir / "adapter"
        peft_model.save_pretrained(str(out))
        self.tokenizer.save_pretrained(str(out))
        if self.cfg is not None:
            OmegaConf.save(self.cfg, out / "pipesynth_config.yaml", resolve=True)
        log.info("adapter saved to %s", out)
        return out

    def save_merged(self, adapter_dir: Path) -> Path:
        """Merge into the base loaded WITHOUT quantisation (merging into 4-bit weights would round the
        adapter away); the result loads with plain `AutoModelForCausalLM.from_pretrained`."""
        from peft import PeftModel

        from src.training.base_models import load_base_model

        if self.cfg is None:
            raise ValueError("merge=True needs the run config to rebuild the base model")
        base, _ = load_base_model(self.cfg.model, None, self.cfg.paths.cache_dir)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        out = self.run_dir / "merged"
        merged.save_pretrained(str(out))
        self.tokenizer.save_pretrained(str(out))
        log.info("merged model saved to %s", out)
        return out
