"""Every generation setting has one source (conf/generation/default.yaml): `src.generate` and
`src.evaluate solution=generate` compose the same file, so they cannot disagree."""

from __future__ import annotations

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.config import REPO_ROOT

CONF = REPO_ROOT / "conf"
SHARED = CONF / "generation" / "default.yaml"
INCLUDERS = (CONF / "generate.yaml", CONF / "solution" / "generate.yaml")


def _defined(path) -> tuple[set[str], set[str]]:
    """Top-level keys a config file sets, and the packages its defaults list fills."""
    data = yaml.safe_load(path.read_text()) or {}
    packages = set()
    for entry in data.pop("defaults", []) or []:
        if isinstance(entry, dict):
            (key,) = entry
            key = key.removeprefix("override ").lstrip("/")
            group, _, package = key.partition("@")
            packages.add(package or group)
    return set(data), packages


def _settings() -> set[str]:
    keys, packages = _defined(SHARED)
    return keys | (packages - {"_here_"})


def test_the_shared_file_holds_the_stages_and_the_settings() -> None:
    assert {"k", "temperature", "sampling", "threads", "repair_rounds"} <= _settings()
    assert {"llm", "refine", "coder", "search", "decide", "retrieval"} <= _settings()


@pytest.mark.parametrize("path", INCLUDERS, ids=lambda p: str(p.relative_to(CONF)))
def test_no_generation_setting_is_defined_again(path) -> None:
    keys, packages = _defined(path)
    again = (keys | packages) & _settings()
    assert not again, (
        f"{path.relative_to(REPO_ROOT)} defines {sorted(again)} again: set them in {SHARED.name}"
    )


def test_generate_and_evaluate_resolve_every_setting_alike() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        gen = compose("generate", overrides=["task=titanic", "paths.output_dir=/tmp/x"])
        ev = compose("evaluate", overrides=["solution=generate", "paths.output_dir=/tmp/x"])
    differ = []
    for key in sorted(_settings()):
        a = OmegaConf.to_container(gen[key], resolve=True) if OmegaConf.is_config(gen[key]) else gen[key]
        b = (
            OmegaConf.to_container(ev.solution[key], resolve=True)
            if OmegaConf.is_config(ev.solution[key])
            else ev.solution[key]
        )
        if a != b:
            differ.append(key)
    assert not differ, f"src.generate and solution=generate resolve {differ} differently"
    assert len(_settings()) >= 25  # the check above really compared the whole file


def test_a_command_line_override_reaches_each_entry_point() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        gen = compose("generate", overrides=["task=titanic", "refine=multi_role", "k=1"])
        ev = compose(
            "evaluate", overrides=["solution=generate", "refine@solution.refine=multi_role", "solution.k=1"]
        )
    assert (
        gen.refine._target_ == ev.solution.refine._target_ == "src.pipeline.refine.multi_role.MultiRoleRefine"
    )
    assert gen.k == ev.solution.k == 1
