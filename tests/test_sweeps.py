"""Sweeps cannot drift from the configs: every value of every W&B sweep (and of the Optuna sweeper configs)
composes as Hydra overrides against the real conf/, and W&B's own sweep engine proposes runs from each file."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

import sweeps as sweeps_engine  # W&B's sweep engine (scripts/setup.sh installs it)
from src.reporting.sweep_args import hydra_args

REPO = Path(__file__).resolve().parent.parent
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
OPTUNA = sorted((REPO / "conf" / "hydra" / "sweeper").glob("*.yaml"))


def _command(spec: dict[str, Any], config: dict[str, Any]) -> tuple[str, list[str]]:
    """(entry config name, Hydra overrides) of the process the W&B agent starts for `config`: the command's
    macros expanded as wandb_agent.py does, then src.reporting.sweep_args' translation."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    assert "${args_no_hyphens}" in spec["command"], "the agent must pass the parameters as Hydra overrides"
    macros = {"env": [], "interpreter": ["python"], "program": [spec["program"]],
              "args_no_hyphens": create_sweep_command_args({"args": config})["args_no_hyphens"]}  # fmt: skip
    argv: list[str] = []
    for chunk in map(str, spec["command"]):
        argv += macros[chunk[2:-1]] if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    module, args = argv[argv.index("-m") + 1], argv[argv.index("-m") + 2 :]
    if module == "src.reporting.sweep_args":
        module, args = args[0], hydra_args(args[1:])
    assert module.startswith("src.") and spec["program"] == f"{module.replace('.', '/')}.py"
    assert (REPO / spec["program"]).is_file()
    return module.split(".", 1)[1], args


def _compose(entry: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(entry, overrides=["paths.output_dir=/tmp/pipesynth-sweeps", *overrides])


def _check(cfg: DictConfig, override: str) -> None:
    """The overridden key exists and holds the value (a group override: the chosen option's name/mode)."""
    key, _, value = override.partition("=")
    key = key.lstrip("+")
    if "@" in key:  # group@package=option
        node = OmegaConf.select(cfg, key.split("@", 1)[1])
        assert node is not None and value in (node.get("name"), node.get("mode")), override
    elif "/" not in key and key != "experiment":
        got = OmegaConf.select(cfg, key, throw_on_missing=True)
        assert got is not None or value in ("null", "None"), override


def _values(param: dict[str, Any]) -> list[Any]:
    if "values" in param:
        return list(param["values"])
    if "value" in param:
        return [param["value"]]
    return [param["min"], param["max"]]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_value_composes(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    assert sweeps_engine.schema_violations_from_proposed_config(spec) == []
    fixed = {k: p for k, p in spec["parameters"].items() if "value" in p}
    for name, param in spec["parameters"].items():
        for value in _values(param):
            entry, overrides = _command(spec, {**fixed, name: {"value": value}})
            cfg = _compose(entry, overrides)
            for override in overrides:
                _check(cfg, override)
            OmegaConf.select(cfg, "solution.name")  # interpolations in the command resolve
    # the check has teeth: a key the config lacks is refused
    entry, overrides = _command(spec, fixed)
    with pytest.raises(ConfigCompositionException):
        _compose(entry, [*overrides, "optimizer.lrr=1"])


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_wandb_sweep_engine_proposes_runs_that_compose(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    metric = spec["metric"]["name"]
    runs: list[Any] = []
    for i in range(4):
        proposal = sweeps_engine.next_run(spec, runs, validate=True)
        assert proposal is not None
        entry, overrides = _command(spec, proposal.config)
        cfg = _compose(entry, overrides)
        for name, param in spec["parameters"].items():
            value = proposal.config[name]["value"]
            if "min" in param:
                assert param["min"] <= value <= param["max"]
            else:
                assert value in _values(param)
        for override in overrides:
            _check(cfg, override)
        proposal.state = sweeps_engine.RunState.finished
        proposal.summary_metrics = {metric: 1.0 / (i + 1)}
        runs.append(proposal)


def _choices(expression: str) -> list[str]:
    """The values an Optuna sweeper parameter can take (interval: its ends)."""
    override = OverridesParser.create().parse_override(f"x={expression}")
    if not override.is_sweep_override():
        return [str(override.get_value_element_as_str())]
    sweep = override.value()
    if hasattr(sweep, "list"):
        return [str(v) for v in sweep.list]
    return [str(sweep.start), str(sweep.end)]


@pytest.mark.parametrize("path", OPTUNA, ids=lambda p: p.stem)
def test_optuna_sweeper_space_composes(path: Path) -> None:
    entry = {"qlora_optuna": "train", "generation_optuna": "evaluate"}[path.stem]
    base = ["+experiment=qlora_smollm2_cpu"] if entry == "train" else ["solution=generate"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        hcfg = compose(entry, overrides=[*base, f"hydra/sweeper={path.stem}"], return_hydra_config=True)
    sweeper = hcfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction in ("minimize", "maximize")
    params = OmegaConf.to_container(sweeper.params)
    for name, expression in params.items():
        for value in _choices(str(expression)):
            if re.fullmatch(r"-?[\d.e+-]+", value):
                assert math.isfinite(float(value))
            cfg = _compose(entry, [*base, f"{name}={value}"])
            _check(cfg, f"{name}={value}")


@pytest.mark.slow
def test_optuna_sweeper_runs_training_trials(tmp_path: Path, shared_dir: Path) -> None:
    """Two real trials of the tiny model: the sweeper reads the validation loss src.train returns."""
    import subprocess
    import sys

    cmd = [
        sys.executable, "-m", "src.train", "-m", "+experiment=qlora_tiny", "hydra/sweeper=qlora_optuna",
        "hydra.sweeper.n_trials=2", f"paths.root_dir={tmp_path}", f"paths.shared_dir={shared_dir}",
        "logger=none", "validate_before=false",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (optimization,) = tmp_path.glob("multirun/train/qlora_tiny/*/optimization_results.yaml")
    result = yaml.safe_load(optimization.read_text())
    assert result["name"] == "optuna" and math.isfinite(float(result["best_value"]))
    assert set(result["best_params"]) == {"optimizer.lr", "lora.r", "lora.lora_alpha", "lora.target_modules"}
