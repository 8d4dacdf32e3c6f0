"""OmegaConf resolvers and the guard every entry point runs under."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from src.errors import PipesynthError

REPO_ROOT = Path(__file__).resolve().parent.parent

F = TypeVar("F", bound=Callable[..., Any])


def register_resolvers() -> None:
    """Register `${repo_root:}` (absolute path of the checkout) once."""
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))


def user_errors_exit(fn: F) -> F:
    """Wrap an entry point: a PipesynthError becomes one line on stderr and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipesynthError as err:
            print(f"pipesynth: error: {err}", file=sys.stderr)
            if os.environ.get("PIPESYNTH_TRACEBACK"):
                raise
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


register_resolvers()
