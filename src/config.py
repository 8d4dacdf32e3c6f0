"""OmegaConf resolvers and the guard every entry point runs under."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from src.errors import PipesynthError

REPO_ROOT = Path(__file__).resolve().parent.parent

F = TypeVar("F", bound=Callable[..., Any])

# Held while any torch model is built from disk. transformers/accelerate patch torch.nn.Module process-wide
# while they build a model on the meta device, so a model loaded in another thread at the same moment (the
# LLM in one suite worker, the retrieval embedder in the other) gets meta tensors ("Cannot copy out of meta
# tensor").
MODEL_LOAD_LOCK = threading.RLock()


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


def resolve_threads(value: Any) -> int | None:
    """`threads`: an int, null (torch's default) or `auto`: the cores not busy right now (CPU use over 0.5 s).

    On a shared 2-core machine a second torch thread that has to wait for a busy core slows every op down
    (measured here: 35 tokens/s with 2 threads against 85 with 1 under a load of 3), so `auto` counts only idle
    cores, at least 1. It samples current use, not the 1-minute load average, which still counts a job that
    ended a minute ago (seen here: 1 thread chosen on an idle machine right after a test run).
    """
    if value is None:
        return None
    if str(value) == "auto":
        import psutil

        cores = os.cpu_count() or 1
        busy = psutil.cpu_percent(interval=0.5) / 100 * cores
        return max(1, min(cores, int(cores - busy + 0.5)))
    return int(value)


def set_torch_threads(value: Any) -> int | None:
    """Resolve `threads` (see `resolve_threads`) and apply it to torch; returns the count, None if untouched."""
    threads = resolve_threads(value)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return threads


register_resolvers()
