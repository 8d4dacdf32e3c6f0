"""Providers that turn a prepared task into a solution script in a build folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from src.errors import PipesynthError

BUILTIN_DIR = Path(__file__).resolve().parent


@dataclass
class SolutionBuild:
    """A script ready to run, plus what the provider wants recorded with the result."""

    script: Path
    meta: dict[str, Any] = field(default_factory=dict)


class SolutionProvider(Protocol):
    name: str

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        """Write a solution script for the task whose public files are in `public_dir`."""
        ...


def read_public_facts(public_dir: Path) -> dict[str, Any]:
    """The task facts a solution may see (public/task.json)."""
    return json.loads((Path(public_dir) / "task.json").read_text())


class ScriptFile:
    """A fixed solution file, the same for every task (it reads input/task.json to adapt)."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = BUILTIN_DIR / path  # built-in solutions are named relative to src/solutions/
        if not path.is_file():
            raise PipesynthError(
                f"solution file '{path}' does not exist",
                "pass solution=<path to a .py file> or one of the names in conf/solution/",
            )
        self.path = path.resolve()
        self.name = name or self.path.stem

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        build_dir.mkdir(parents=True, exist_ok=True)
        script = build_dir / "solution.py"
        shutil.copyfile(self.path, script)
        return SolutionBuild(script=script, meta={"source": str(self.path)})


class CompilerBaseline:
    """The compiler's fixed default plan for the task's data type (LightGBM tabular, TF-IDF + linear text)."""

    def __init__(self, name: str = "baseline_gbdt") -> None:
        self.name = name

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        from src.pipeline.compiler.baselines import render_baseline_gbdt

        build_dir.mkdir(parents=True, exist_ok=True)
        script = build_dir / "solution.py"
        script.write_text(render_baseline_gbdt(read_public_facts(public_dir)))
        return SolutionBuild(script=script, meta={"source": "compiler default plan"})
