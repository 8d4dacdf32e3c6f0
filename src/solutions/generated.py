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

from src.config import resolve_threads
from src.pipeline.generate import Pipeline
from src.solutions.providers import SolutionBuild


class GeneratedSolution:
    """Build a solution script per task with `src.pipeline.generate.Pipeline` (config: conf/solution/generate.yaml)."""

    def __init__(self, name: str = "generate", suite_workers: int = 1, **cfg: Any) -> None:
        self.name = name
        self.suite_workers = max(1, int(suite_workers))
        # `_recursive_: false`: the llm/refine/coder/sandbox configs stay configs until the pipeline needs them
        self.cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
        self._pipeline: Any = None
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Any:
        """The pipeline, built on first use (loading a local model takes seconds; a replay needs none)."""
        with self._lock:
            if self._pipeline is None:
                if str(self.cfg.get("threads")) == "auto":
                    # the suite's other tasks run sandboxes beside the model: a thread waiting for a busy core
                    # slows every op (10x seen), so the idle cores are shared among the tasks run at once
                    self.cfg.threads = max(1, (resolve_threads("auto") or 1) // self.suite_workers)
                self._pipeline = Pipeline.from_config(self.cfg)
            return self._pipeline

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        result = self.pipeline.run(public_dir, build_dir, seed=seed)
        derived = result.derived_dir if result.derived_dir.is_dir() else None
        meta = {"source": "generate", "method": self.cfg.get("method"), **result.summary()}
        return SolutionBuild(script=result.solution_path, meta=meta, inputs=derived)
