"""`GeneratedSolution`: the generation pipeline as a solution provider for the runner (`solution=generate`).

    python -m src.evaluate suite=dev solution=generate

`build(public_dir, build_dir, seed)` generates from the task's public files only (description.md and task.json
are in public/) into `build_dir` (journal.json, instruction.md, solution.py) and hands solution.py to the
runner. The pipeline — the LLM client with its model weights, the coder, the sandbox — is built once, on the
first build, and shared by the runner's worker threads (LLM calls are serialised, sandbox runs are not).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.solutions.providers import SolutionBuild


class GeneratedSolution:
    """Build a solution script per task with `src.pipeline.generate.Pipeline` (config: conf/solution/generate.yaml)."""

    def __init__(self, name: str = "generate", **cfg: Any) -> None:
        self.name = name
        # `_recursive_: false`: the llm/refine/coder/sandbox configs stay configs until the pipeline needs them
        self.cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
        self._pipeline: Any = None
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Any:
        """The pipeline, built on first use (loading a local model takes seconds; a replay needs none)."""
        with self._lock:
            if self._pipeline is None:
                from src.pipeline.generate import Pipeline

                self._pipeline = Pipeline.from_config(self.cfg)
            return self._pipeline

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        result = self.pipeline.run(public_dir, build_dir, seed=seed)
        derived = result.derived_dir if result.derived_dir.is_dir() else None
        meta = {"source": "generate", **result.summary()}
        return SolutionBuild(script=result.solution_path, meta=meta, inputs=derived)
