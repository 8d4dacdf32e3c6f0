"""QLoRA fine-tuning of the instruction model (the paper's Section 4.1, Table 2) in Lightning.

    python -m src.train +experiment=qlora_smollm2_cpu           # embedded SmolLM2-135M on CPU, <= 10 min
    python -m src.train +experiment=qlora_tiny                  # tiny random Llama, seconds (smoke test)
    python -m src.train +experiment=qlora_llama2 model.path=/models/Llama-2-7b-hf   # the paper, on a GPU
    python -m src.train +experiment=qlora_smollm2_cpu ckpt_path=last    # resume the latest run of that name
    python -m src.train +experiment=qlora_llama2 model.path=... trainer=ddp trainer.devices=4
    python -m src.train -m hydra/launcher=slurm +experiment=qlora_llama2 model.path=... seed=0,1,2

Writes, under the Hydra run dir (outputs/train/<name>/<timestamp>/): `adapter/` (peft adapter + tokenizer +
resolved config), `merged/` with merge=true, `checkpoints/` (every 500 steps and last), `train_summary.json`
(steps, tokens, tokens/s, train/val loss before and after, peak memory) and the W&B (offline) or CSV logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from datasets import DatasetDict
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import set_torch_threads, user_errors_exit
from src.errors import PipesynthError

log = logging.getLogger(__name__)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path`: null (fresh), `last` (this run's, else the newest run of the same name), or a file."""
    value = cfg.get("ckpt_path")
    if value in (None, "", "null"):
        return None
    if str(value) != "last":
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise PipesynthError(
                f"ckpt_path={path} does not exist", "pass a .ckpt file, ckpt_path=last or null"
            )
        return str(path)
    here = Path(cfg.checkpoint_dir) / "last.ckpt"
    if here.is_file():
        return str(here)
    # Hydra gives every run a fresh timestamped folder: resume from the newest sibling run of the same name
    siblings = sorted(
        Path(cfg.paths.output_dir).resolve().parent.glob("*/checkpoints/last.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not siblings:
        raise PipesynthError(
            f"ckpt_path=last: no last.ckpt in {here.parent} nor in earlier runs under "
            f"{Path(cfg.paths.output_dir).resolve().parent}",
            "start without ckpt_path (a checkpoint is written every 500 steps and at the end), or pass a file",
        )
    return str(siblings[-1])


def check_config(cfg: DictConfig) -> str | None:
    """Everything that can be checked before any work (weights present, checkpoint present, sizes sane)."""
    from src.training.base_models import check_model_config

    check_model_config(cfg.model)
    if cfg.max_seq_len is not None and int(cfg.max_seq_len) < 16:
        raise PipesynthError(
            f"max_seq_len={cfg.max_seq_len} is too small", "use e.g. max_seq_len=512 or 1024"
        )
    if cfg.datamodule.packing and not cfg.max_seq_len:
        raise PipesynthError("datamodule.packing=true needs max_seq_len", "set max_seq_len=1024")
    return resolve_ckpt_path(cfg)


def load_datasets(cfg: DictConfig, tokenizer: Any) -> DatasetDict:
    """The corpus: `cfg.corpus` (default `src.corpus.build.build_corpus(cfg, tokenizer=...)`), subsets and
    filters from `cfg.data`."""
    datasets: DatasetDict = instantiate(cfg.corpus)(cfg, tokenizer=tokenizer)
    if "train" not in datasets or len(datasets["train"]) == 0:
        raise PipesynthError("the corpus has no training examples", "loosen the data filters (conf/data/)")
    if "validation" in datasets and not len(datasets["validation"]):
        datasets = DatasetDict({"train": datasets["train"]})
    return datasets


def _device_map(cfg: DictConfig) -> Any:
    """Load 4-bit weights straight onto this process's GPU (Lightning cannot `.to()` them cheaply)."""
    if str(cfg.trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available():
        return None
    return {"": int(os.environ.get("LOCAL_RANK", 0))}


def _loggers(cfg: DictConfig) -> list[Any]:
    return [instantiate(node) for node in (cfg.logger or {}).values() if node]


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 5)


def train(cfg: DictConfig, datasets: DatasetDict | None = None) -> dict[str, Any]:
    """Fine-tune `cfg.model` with LoRA (4-bit base with quant=nf4); returns the summary also written to
    `<run dir>/train_summary.json`. `datasets` replaces the configured corpus (tests, benchmarks)."""
    ckpt_path = check_config(cfg)  # fail before loading anything

    from src.corpus.prompts import build_template
    from src.training.base_models import add_lora, load_base_model, load_tokenizer
    from src.training.callbacks import AdapterExport, ThroughputMonitor
    from src.training.data import PromptCompletionDataModule
    from src.training.module import CausalLMFineTune

    started = time.perf_counter()
    threads = set_torch_threads(cfg.threads)
    if threads:
        log.info("torch threads: %d", threads)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    template = build_template(cfg.prompt, tokenizer)
    data = load_datasets(cfg, tokenizer) if datasets is None else datasets
    model, tokenizer = load_base_model(cfg.model, cfg.quant, cfg.paths.cache_dir, device_map=_device_map(cfg))
    model = add_lora(model, cfg.lora, gradient_checkpointing=bool(cfg.model.gradient_checkpointing))
    trainable, total = model.get_nb_trainable_parameters()

    datamodule = PromptCompletionDataModule(
        data, tokenizer, max_seq_len=cfg.max_seq_len, seed=int(cfg.seed), template=template, **cfg.datamodule
    )
    module = CausalLMFineTune(
        model, cfg.optimizer, cfg.scheduler, selective_logits=bool(cfg.get("selective_logits", True))
    )
    throughput = ThroughputMonitor()
    export = AdapterExport(run_dir, tokenizer, cfg, merge=bool(cfg.merge))
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c] + [throughput, export]
    loggers = _loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    datamodule.setup("fit")
    has_val = "validation" in datamodule.splits
    val_before = None
    if has_val and cfg.validate_before and ckpt_path is None:
        val_before = trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    resumed_from = module.resumed_from_step

    val_after = None
    if has_val and not trainer.interrupted:
        if module.last_val_step == trainer.global_step and "val/loss" in trainer.callback_metrics:
            val_after = float(trainer.callback_metrics["val/loss"])
        else:
            val_after = trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/loss"]

    curve = module.train_loss_curve()
    tail = curve[-max(1, math.ceil(len(curve) / 10)) :] if curve else []
    summary: dict[str, Any] = {
        "name": cfg.name,
        "model": cfg.model.name,
        "quant": cfg.quant.name,
        "steps": int(trainer.global_step),
        "resumed_from_step": resumed_from,
        "interrupted": bool(trainer.interrupted),
        "epochs": int(trainer.current_epoch),
        "train_examples": len(datamodule.splits["train"]),
        "val_examples": len(datamodule.splits["validation"]) if has_val else 0,
        "max_seq_len": cfg.max_seq_len,
        "threads": torch.get_num_threads(),
        "trainable_params": int(trainable),
        "total_params": int(total),
        **throughput.summary(),
        "train_loss_first": _float(curve[0]) if curve else None,
        "train_loss_final": _float(curve[-1]) if curve else None,
        "train_loss_final_mean": _float(sum(tail) / len(tail)) if tail else None,
        "train_loss_curve": [round(x, 5) for x in curve],
        "val_loss_before": _float(val_before),
        "val_loss_after": _float(val_after),
        "data": datamodule.stats,
        "adapter_dir": str(export.adapter_dir) if export.adapter_dir else None,
        "merged_dir": str(export.merged_dir) if export.merged_dir else None,
        "last_checkpoint": _last_checkpoint(trainer),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    if trainer.is_global_zero:
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        if val_before is not None and val_after is not None:
            print(
                f"validation loss per completion token: base {val_before:.4f} -> adapter {val_after:.4f} "
                f"({val_after - val_before:+.4f})"
            )
        print(f"train summary: {run_dir / 'train_summary.json'}")
    return summary


def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, "last_model_path", None) if cb is not None else None
    return str(path) if path else None


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@user_errors_exit
def main(cfg: DictConfig) -> float | None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    return train(cfg)["val_loss_after"]  # the objective of hydra/sweeper=qlora_optuna


if __name__ == "__main__":
    main()
