"""solution=retrieval_only: the nearest corpus competition's rank-1 instruction through the compiler, no LLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.config import REPO_ROOT
from src.corpus.families import family_of
from src.solutions.providers import RetrievalOnly

TITANIC = "start-here-predict-survival-on-f6791d6c"  # Titanic's corpus competition


def solution_cfg(tmp_path: Path, shared_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                "solution=retrieval_only",
                f"paths.shared_dir={shared_dir}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                *overrides,
            ],
        )
    return cfg


def public_dir(tmp_path: Path, kaggle_dir: Path, slug: str) -> Path:
    """A public folder as prepare writes it, as far as the provider reads it (task.json, description.md)."""
    out = tmp_path / slug / "public"
    out.mkdir(parents=True)
    shutil.copyfile(kaggle_dir / slug / "task.json", out / "task.json")
    shutil.copyfile(kaggle_dir / slug / "description.md", out / "description.md")
    return out


def test_config_composes_and_names_the_suite_tasks(tmp_path: Path, shared_dir: Path) -> None:
    cfg = solution_cfg(tmp_path, shared_dir)
    assert cfg.solution.name == "retrieval_only"
    assert "titanic" in cfg.solution.evaluated_tasks  # the dev suite being evaluated
    assert cfg.solution.coder._target_ == "src.pipeline.code.compiler.coder.CompilerCoder"
    # TF-IDF: the better nearest-neighbour family agreement (benchmarks/retrieval_quality.py)
    assert cfg.solution.retrieval.embedder._target_ == "src.corpus.retrieval.TfidfEmbedder"
    assert cfg.solution.retrieval.mode == "context"
    assert isinstance(instantiate(cfg.solution), RetrievalOnly)


@pytest.mark.parametrize("slug", ["titanic", "spooky-author-identification"])
def test_builds_a_compiled_script_from_a_neighbour_never_the_task_itself(
    tmp_path: Path, shared_dir: Path, kaggle_dir: Path, slug: str
) -> None:
    # no suite exclusion at all: the task itself must still be left out of the neighbours
    cfg = solution_cfg(
        tmp_path, shared_dir, "solution.retrieval.exclude_suites=[]", "~solution.evaluated_tasks"
    )
    provider = instantiate(cfg.solution)
    build = provider.build(public_dir(tmp_path, kaggle_dir, slug), tmp_path / "build", seed=0)
    meta = build.meta
    assert meta["source"] == "retrieval_only" and meta["neighbour"] != TITANIC
    if slug == "titanic":
        assert meta["excluded_rows"] == {"titanic": 99}
    assert meta["family"] is not None and meta["family"] == family_of(
        (tmp_path / "build" / "instruction.md").read_text()
    )
    code = build.script.read_text()
    compile(code, str(build.script), "exec")
    assert "cv_score" in code  # a compiled script reports its inner validation
    recorded = json.loads((tmp_path / "build" / "retrieval.json").read_text())
    assert (
        recorded["neighbour"] == meta["neighbour"] and recorded["metric_category"] == meta["metric_category"]
    )
    # the same task twice: the same neighbour and script (deterministic; the index is built once)
    again = provider.build(public_dir(tmp_path / "again", kaggle_dir, slug), tmp_path / "build2", seed=0)
    assert again.meta["neighbour"] == meta["neighbour"] and again.script.read_text() == code
