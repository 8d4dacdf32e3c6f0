"""Every training experiment and config group composes; qlora_llama2 is the paper's Table 2, value by value."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import REPO_ROOT

CONF = REPO_ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("qlora_*.yaml"))


def _compose(*overrides: str, hydra_cfg: bool = False) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=["paths.output_dir=/tmp/pipesynth-compose", *overrides],
            return_hydra_config=hydra_cfg,
        )


def test_the_training_experiments_exist() -> None:
    assert {"qlora_llama2", "qlora_smollm2_cpu", "qlora_tiny"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds_its_objects(experiment: str) -> None:
    cfg = _compose(f"+experiment={experiment}")
    OmegaConf.resolve(cfg)  # every interpolation resolves (llama2 too, without weights)
    assert cfg.name == experiment and cfg.entry == "train"
    lora = instantiate(cfg.lora)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (
        cfg.lora.r,
        cfg.lora.lora_alpha,
        cfg.lora.lora_dropout,
    )
    if cfg.quant.get("bnb") is not None:  # quant=none: a full-precision base
        bnb = instantiate(cfg.quant.bnb)
        assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4"
    source = instantiate(cfg.model.source)
    assert callable(source.materialize) and callable(source.check)
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = instantiate(cfg.optimizer, params=params)
    assert optimizer.defaults["lr"] == cfg.optimizer.lr
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, total_steps=100)
    assert scheduler.get_last_lr()[0] == 0.0  # linear warmup starts at 0
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert callbacks[0]._every_n_train_steps == cfg.callbacks.checkpoint.every_n_train_steps


def test_qlora_llama2_is_table_2() -> None:
    cfg = _compose("+experiment=qlora_llama2")
    assert cfg.model.name == "llama2_7b" and cfg.model.path is None
    # LoRA parameters
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (64, 16, 0.1)
    assert list(cfg.lora.target_modules) == ["q_proj", "v_proj"]
    # 4-bit precision parameters
    bnb = instantiate(cfg.quant.bnb)
    assert bnb.load_in_4bit is True and bnb.bnb_4bit_quant_type == "nf4"
    assert bnb.bnb_4bit_compute_dtype == torch.float16 and bnb.bnb_4bit_use_double_quant is False
    # TrainingArguments parameters
    t = cfg.trainer
    assert (t.max_epochs, t.max_steps, t.accumulate_grad_batches) == (1, -1, 1)
    assert t.precision == "32-true"  # fp16/bf16 False
    assert (cfg.datamodule.batch_size, cfg.datamodule.eval_batch_size) == (4, 4)
    assert cfg.model.gradient_checkpointing is True
    assert t.gradient_clip_val == 0.3
    assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.weight_decay == 0.001
    assert cfg.optimizer._target_.endswith("paged_adamw_32bit")
    assert cfg.scheduler._target_.endswith("constant_with_warmup") and cfg.scheduler.warmup_ratio == 0.03
    assert cfg.datamodule.group_by_length is True
    assert cfg.callbacks.checkpoint.every_n_train_steps == 500 and t.log_every_n_steps == 25
    # sequence fine-tuning parameters: no packing; max_seq_len explicit (Table 2: None, see the YAML)
    assert cfg.datamodule.packing is False and cfg.max_seq_len == 4096
    assert t.accelerator == "gpu"


def test_constant_schedule_after_three_percent_warmup() -> None:
    cfg = _compose("+experiment=qlora_llama2")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.optimizer.lr)
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, total_steps=1000)  # 30 warmup steps
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[15] == pytest.approx(1e-4) and lrs[30:] == [pytest.approx(2e-4)] * 70


# ids are not the bare names: a test with the keyword "gpu" would be skipped without CUDA (conftest)
@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp", "fsdp"], ids=lambda t: f"trainer_{t}")
def test_trainer_configs_compose(trainer: str) -> None:
    cfg = _compose("+experiment=qlora_tiny", f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer" and cfg.trainer.gradient_clip_val == 0.3
    if trainer in ("ddp", "fsdp"):
        strategy = instantiate(cfg.trainer.strategy)
        assert type(strategy).__name__ == {"ddp": "DDPStrategy", "fsdp": "FSDPStrategy"}[trainer]
    if trainer == "cpu":
        pl_trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert pl_trainer.max_epochs == 1 and pl_trainer.gradient_clip_val == 0.3


def test_fsdp_wraps_llama_decoder_layers() -> None:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    cfg = _compose("+experiment=qlora_llama2", "trainer=fsdp")
    assert instantiate(cfg.trainer.strategy.auto_wrap_policy) == {LlamaDecoderLayer}


@pytest.mark.parametrize("logger", ["wandb", "csv", "none"])
def test_logger_configs(logger: str, tmp_path: Path) -> None:
    cfg = _compose("+experiment=qlora_tiny", f"logger={logger}", f"paths.output_dir={tmp_path}")
    loggers = [instantiate(node) for node in cfg.logger.values()]
    assert len(loggers) == (0 if logger == "none" else 1)
    if logger == "wandb":
        assert cfg.logger.wandb.offline is True and cfg.logger.wandb.save_dir == str(tmp_path)


def test_slurm_launcher_composes() -> None:
    cfg = _compose("+experiment=qlora_llama2", "hydra/launcher=slurm", hydra_cfg=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.timeout_min == 720


def test_lora_all_linear_option() -> None:
    cfg = _compose("+experiment=qlora_tiny", "lora=all_linear")
    assert instantiate(cfg.lora).target_modules == "all-linear"


def test_quant_none_means_full_precision() -> None:
    from src.training.base_models import quantization_config

    assert quantization_config(_compose("quant=none").quant) is None
    assert quantization_config(_compose("quant=nf4").quant).load_in_4bit


# ---------------------------------------------------------------- the paper's experiments as evaluation configs
def _evaluate(*overrides: str, hydra_cfg: bool = False) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "evaluate",
            overrides=["paths.output_dir=/tmp/pipesynth-compose", *overrides],
            return_hydra_config=hydra_cfg,
        )


def test_ablation_refinement_is_one_multirun_of_distinct_variants() -> None:
    """Every job of the multirun composes; refine x retrieval variants get distinct stores; seeds 0, 1, 2."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    hcfg = _evaluate("+experiment=ablation_refinement", hydra_cfg=True)
    assert (
        OmegaConf.to_container(hcfg.hydra.sweep)["subdir"] == "${name}"
    )  # hydra=cluster: a variant's seeds share its store
    parser = OverridesParser.create()
    axes = []
    for key, value in hcfg.hydra.sweeper.params.items():
        sweep = parser.parse_override(f"{key}={value}")
        axes.append([f"{key}={v}" for v in sweep.sweep_string_iterator()])
    jobs = list(itertools.product(*axes))
    assert len(jobs) == 3 * 2 * 3
    names = {}
    for job in jobs:
        cfg = _evaluate("+experiment=ablation_refinement", *job)
        assert cfg.group == "ablation_refinement" and cfg.solution._target_.endswith("GeneratedSolution")
        variant = (cfg.solution.refine.name, cfg.solution.retrieval.mode)
        names.setdefault(variant, set()).add(cfg.solution.name)
        assert len(cfg.seeds) == 1 and int(cfg.seeds[0]) in (0, 1, 2)
    assert set(names) == {(r, m) for r in ("none", "multi_role", "execution") for m in ("none", "context")}
    assert all(len(n) == 1 for n in names.values()) and len({next(iter(n)) for n in names.values()}) == 6


def test_paper_table1_runs_the_papers_five_competitions_beside_its_figures() -> None:
    cfg = _evaluate("+experiment=paper_table1", "solution=generate")
    assert cfg.suite.name == "paper" and list(cfg.seeds) == [0, 1, 2] and cfg.group == "paper_table1"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        tables = compose("tables")
    assert sorted(cfg.suite.tasks) == sorted(tables.paper_table1.rows)  # the paper's numbers sit beside ours


def test_main_experiment_only_sets_existing_keys() -> None:
    base = OmegaConf.to_container(_evaluate("solution=generate").solution)
    main = _evaluate("solution=generate", "+experiment=main")
    assert main.solution.search.budget_s < base["search"]["budget_s"] and main.workers == 1
    assert set(OmegaConf.to_container(main.solution)) == set(base)
