"""The LightningModule around a peft (Q)LoRA model: optimizer and schedule from config, lean logging."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

_EXTRA_KEYS = ("num_tokens", "num_label_tokens", "label_index", "label_targets")


def completion_loss(model: Any, batch: dict[str, Any], selective: bool = True) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens (the labels that are not -100).

    `selective`: run the output head only at those positions (`batch["label_index"]`, from the collator)
    instead of at every prompt and padding token. With a 49k vocabulary the head and its softmax are a large
    share of a small model's step; the loss is the same as `model(**batch).loss`. Falls back to the model's
    own loss for heads that do more than a projection (e.g. logit soft-capping).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if (
        not selective
        or head is None
        or getattr(base.config, "final_logit_softcapping", None)
        or "label_index" not in batch
    ):
        inputs = {k: v for k, v in batch.items() if k not in _EXTRA_KEYS}
        return model(**inputs).loss
    inputs = {k: v for k, v in batch.items() if k not in _EXTRA_KEYS and k != "labels"}
    hidden = base.get_decoder()(**inputs, use_cache=False).last_hidden_state
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, batch["label_index"])
    logits = head(hidden).float()
    return torch.nn.functional.cross_entropy(logits, batch["label_targets"])


def paged_adamw_32bit(params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """bitsandbytes' PagedAdamW32bit on CUDA (the paper's optimizer); torch AdamW elsewhere.

    Paging only exists on CUDA; on CPU bitsandbytes itself falls back to the unpaged update with a warning per
    parameter. torch's AdamW is the same 32-bit update (decoupled weight decay), without the noise.
    """
    params = list(params)
    on_cuda = any(
        p.is_cuda for group in params for p in (group["params"] if isinstance(group, dict) else [group])
    )
    if on_cuda:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW32bit(params, **kwargs)
    log.info("paged_adamw_32bit: parameters are not on CUDA, using torch.optim.AdamW (same 32-bit update)")
    return torch.optim.AdamW(params, **kwargs)


def constant_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> Any:
    """transformers' constant schedule after a linear warmup over ceil(ratio * total steps) steps."""
    from transformers import get_constant_schedule_with_warmup

    return get_constant_schedule_with_warmup(
        optimizer, num_warmup_steps=math.ceil(warmup_ratio * total_steps)
    )


class CausalLMFineTune(pl.LightningModule):
    """Next-token loss on completion tokens (the labels carry -100 elsewhere). Only trainable weights are
    checkpointed: the frozen (4-bit) base is rebuilt from its source on resume."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: DictConfig | dict,
        scheduler: DictConfig | dict | None = None,
        total_steps: int | None = None,
        selective_logits: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_cfg = optimizer
        self.scheduler_cfg = scheduler
        self.total_steps = total_steps
        self.selective_logits = selective_logits
        # checkpoints hold the adapter only, so loading them must not require the frozen base weights
        self.strict_loading = False
        self.tokens_seen = 0
        self.label_tokens_seen = 0
        self.resumed_from_step: int | None = None
        self.last_val_step: int | None = None
        self._losses: list[torch.Tensor] = []

    def train_loss_curve(self) -> list[float]:
        """Training loss of every batch of this run (one host transfer, at the end)."""
        return torch.stack(self._losses).float().cpu().tolist() if self._losses else []

    def on_fit_start(self) -> None:
        # from_pretrained leaves every module in eval mode (no LoRA dropout) and Lightning keeps the mode it finds
        self.model.train()

    def on_train_start(self) -> None:
        if self.global_step > 0:  # restored from a checkpoint
            self.resumed_from_step = int(self.global_step)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.last_val_step = int(self.global_step)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return completion_loss(self.model, batch, self.selective_logits)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        self._losses.append(loss.detach())
        self.tokens_seen += batch["num_tokens"]
        self.label_tokens_seen += batch["num_label_tokens"]
        # a tensor, not .item(): Lightning only moves it to the host when a logger or the progress bar reads it
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        # weighted by label tokens: the epoch value is the mean loss per completion token, not per batch
        self.log(
            "val/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=max(1, batch["num_label_tokens"]),
            sync_dist=True,
        )
        return loss

    def _total_steps(self) -> int:
        if self.total_steps:
            return int(self.total_steps)
        return int(self.trainer.estimated_stepping_batches)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        cfg = (
            OmegaConf.to_container(self.optimizer_cfg, resolve=True)
            if isinstance(self.optimizer_cfg, DictConfig)
            else dict(self.optimizer_cfg)
        )
        optimizer = instantiate(cfg, params=params)
        if not self.scheduler_cfg:
            return optimizer
        sched_cfg = (
            OmegaConf.to_container(self.scheduler_cfg, resolve=True)
            if isinstance(self.scheduler_cfg, DictConfig)
            else dict(self.scheduler_cfg)
        )
        scheduler = instantiate(sched_cfg, optimizer=optimizer, total_steps=self._total_steps())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["label_tokens_seen"] = self.label_tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        missing = trainable - set(checkpoint["state_dict"])
        if missing:
            raise RuntimeError(
                f"checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}"
            )
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))
        self.label_tokens_seen = int(checkpoint.get("label_tokens_seen", 0))
