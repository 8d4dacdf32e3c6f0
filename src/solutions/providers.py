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
    """A script ready to run, plus what the provider wants recorded with the result. `inputs`: a folder of
    derived, label-free input folders (cached sentence embeddings of the public texts) the run gets beside the
    public files as input/<folder>/, so it reads what the build already computed."""

    script: Path
    meta: dict[str, Any] = field(default_factory=dict)
    inputs: Path | None = None


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
        from src.pipeline.code.compiler.baselines import render_baseline_gbdt

        build_dir.mkdir(parents=True, exist_ok=True)
        script = build_dir / "solution.py"
        script.write_text(render_baseline_gbdt(read_public_facts(public_dir)))
        return SolutionBuild(script=script, meta={"source": "compiler default plan"})


class RetrievalOnly:
    """The nearest corpus competition's rank-1 instruction through the compiler coder, no LLM
    (conf/solution/retrieval_only.yaml): the baseline a fine-tuned instruction model has to beat.

    The neighbour is found from the task's public description, data type and metric category
    (src.corpus.retrieval); the index leaves out the configured suites, the suite being evaluated and the task
    itself. With `require_family`, neighbours whose rank-1 instruction names no model family (many corpus
    rank-1 notebooks only blend submission files) are passed over for the next nearest.
    """

    def __init__(
        self,
        retrieval: Any,
        coder: Any,
        metric_categories: Any = None,
        name: str = "retrieval_only",
        require_family: bool = True,
        candidates: int = 10,
        evaluated_tasks: Any = None,
    ) -> None:
        import threading

        self.name = name
        self.retrieval_cfg = retrieval
        self.coder_cfg = coder
        self.metric_categories_cfg = metric_categories
        self.require_family = bool(require_family)
        self.candidates = int(candidates)
        self.evaluated_tasks = [str(t) for t in evaluated_tasks or []]
        self._index: Any = None
        self._coder: Any = None
        self._lock = threading.Lock()

    def _parts(self) -> tuple[Any, Any]:
        """The index and the coder, built once and shared by the runner's worker threads."""
        with self._lock:
            if self._index is None:
                from hydra.utils import instantiate

                from src.corpus.retrieval import load_index

                self._index = load_index(self.retrieval_cfg, evaluated=self.evaluated_tasks)
                self._coder = instantiate(self.coder_cfg)
            return self._index, self._coder

    def build(self, public_dir: Path, build_dir: Path, seed: int) -> SolutionBuild:
        from src.corpus.contamination import TaskText, exclusion_for_tasks
        from src.corpus.metric_categories import load_metric_categories

        index, coder = self._parts()
        facts = read_public_facts(public_dir)
        task = TaskText.from_dir(public_dir)
        own = exclusion_for_tasks([task], index.rows)  # the task itself, whatever the configured suites
        category = load_metric_categories(self.metric_categories_cfg).category_for_task_metric(
            facts["metric"]
        )
        hits = index.nearest(
            task.description or task.title,
            str(facts["data_type"]),
            category,
            n=self.candidates,
            exclude_competitions=own.competitions,
        )
        chosen = next(
            (h for h in hits if h.families[0] or not self.require_family), hits[0] if hits else None
        )
        if chosen is None:
            raise PipesynthError(
                "the retrieval index returned no corpus competition for this task",
                "check retrieval.exclude_suites / exclude_tasks: everything may be excluded",
            )
        instruction = chosen.instructions[0]
        result = coder.generate(instruction, facts)
        build_dir.mkdir(parents=True, exist_ok=True)
        script = build_dir / "solution.py"
        script.write_text(result.code)
        (build_dir / "instruction.md").write_text(instruction + "\n")
        meta = {
            "source": "retrieval_only",
            "neighbour": chosen.competition,
            "similarity": round(chosen.similarity, 4),
            "neighbour_data_type": chosen.data_type,
            "neighbour_metric_category": chosen.metric_category,
            "family": chosen.families[0],
            "metric_category": category,
            "passed_over": [h.competition for h in hits[: hits.index(chosen)]],
            "excluded_rows": {**index.exclusion.report, **own.report},
            "notes": list(result.notes),
            "substitutions": list(result.substitutions),
        }
        (build_dir / "retrieval.json").write_text(json.dumps(meta, indent=2))
        return SolutionBuild(script=script, meta=meta)
