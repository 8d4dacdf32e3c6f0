"""The compiler's data files: model families, metrics, parser vocabulary (YAML beside this module) and templates."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from src.errors import PipesynthError

HERE = Path(__file__).resolve().parent
CATALOG_DIR = HERE / "catalog"
TEMPLATE_DIR = HERE / "templates"

# The only third-party libraries a compiled script may import: the sandbox promises exactly these.
SANDBOX_MODULES = frozenset({"numpy", "pandas", "sklearn", "lightgbm", "scipy"})


@cache
def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())


def models() -> dict[str, dict[str, Any]]:
    """Model families: name -> spec (see catalog/models.yaml)."""
    return _load("models")


def model_spec(family: str) -> dict[str, Any]:
    """One family's spec; a clear error for an unknown name."""
    spec = models().get(family)
    if spec is None:
        raise PipesynthError(
            f"unknown model family '{family}'",
            f"use one of: {', '.join(sorted(models()))} (src/pipeline/code/compiler/catalog/models.yaml)",
        )
    return spec


def metrics() -> dict[str, dict[str, Any]]:
    """Metrics a compiled script can score itself with (see catalog/metrics.yaml)."""
    return _load("metrics")


def vocabulary() -> dict[str, Any]:
    """Patterns the instruction parser recognises (see catalog/vocabulary.yaml)."""
    return _load("vocabulary")


@cache
def template(name: str) -> str:
    """The text of templates/<name>.py.tmpl."""
    path = TEMPLATE_DIR / f"{name}.py.tmpl"
    if not path.is_file():
        raise PipesynthError(
            f"compiler template '{path}' is missing", "reinstall pipesynth from the repository"
        )
    return path.read_text()


def module_usable(module: str) -> bool:
    """True when `module` is installed here and allowed inside the sandbox (so a script may import it)."""
    return module in SANDBOX_MODULES and importlib.util.find_spec(module) is not None


def load_steps() -> dict[str, Any]:
    """Preprocessing step constructors (see catalog/steps.yaml)."""
    return _load("steps")


def moves() -> dict[str, Any]:
    """The search's plan edits (see catalog/moves.yaml)."""
    return _load("moves")
