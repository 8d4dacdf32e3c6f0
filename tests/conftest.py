"""Shared fixtures. Tests run on CPU with one torch thread (2 cores, often two pytest workers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SHARED_DIR = Path(os.environ.get("PIPESYNTH_SHARED", REPO_ROOT.parent / "shared")).resolve()


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.fail(
            f"shared data not found at {SHARED_DIR}; clone the repo with shared/ beside it or set PIPESYNTH_SHARED"
        )
    return SHARED_DIR


@pytest.fixture(scope="session")
def kaggle_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "kaggle"


@pytest.fixture(scope="session")
def corpus_csv(shared_dir: Path) -> Path:
    return shared_dir / "data" / "linguacodus" / "result_prompts_new.csv"


@pytest.fixture(scope="session")
def smollm2_few_steps(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A few real QLoRA steps of `qlora_smollm2_cpu` (SmolLM2-135M, NF4 + LoRA), trained once per session.

    The training test checks its summary; the generation test uses its adapter when no real run exists, so CI
    pays for SmolLM2 training once.
    """
    from hydra import compose, initialize_config_dir

    from src.train import train

    out = tmp_path_factory.mktemp("train") / "qlora_smollm2_cpu"
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={out}",
                "+experiment=qlora_smollm2_cpu",
                "logger=none",
                "data.limit.train=12",
                "data.limit.validation=4",
                "trainer.max_steps=3",
                "trainer.max_epochs=-1",
            ],
        )
    return train(cfg)
