"""The journal of one generation: every candidate the pipeline made, how they relate, and how each one fared.

A node is one step: an instruction sample (`instruction`), a refined instruction (`refine`), a script made from
an instruction (`code`), a script repaired after a failed run (`repair`), or a check of the chosen script on the
full public files (`verify`), or a node of the improvement search (`search`: a plan edit, a
repair, an ensemble; src.pipeline.search). `parent` links a node to what it was made from (a resample to the sample it
replaces, code to its instruction, a repair to the script it fixes), so the journal is a forest that
`journal.json` stores as a flat list (as in AIDE's journal).

Scores are compared only through the task metric's `better` (its declared direction). A node's
`validation_score` comes from the grader on a validation split carved from the public train — never from what a
script prints and never from an LLM.

    journal = Journal(task="titanic", metric="accuracy", higher_is_better=True)
    node = journal.add("instruction", instruction=text, rank=1)
    journal.save(run_dir / "journal.json"); Journal.load(run_dir / "journal.json")
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from src.errors import PipesynthError

Stage = Literal["instruction", "refine", "code", "repair", "verify", "search"]
STAGES: tuple[str, ...] = ("instruction", "refine", "code", "repair", "verify", "search")
JOURNAL_VERSION = 1


def llm_usage(completions: Iterable[Any]) -> dict[str, Any]:
    """Token counts, cache hits and seconds of the LLM completions behind one node."""
    usage = {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}
    for c in completions:
        usage["requests"] += 1
        if getattr(c, "cached", False):
            usage["cache_hits"] += 1
            continue
        usage["prompt_tokens"] += int(getattr(c, "prompt_tokens", 0) or 0)
        usage["completion_tokens"] += int(getattr(c, "completion_tokens", 0) or 0)
        usage["seconds"] += float(getattr(c, "latency_s", 0.0) or 0.0)
    usage["seconds"] = round(usage["seconds"], 3)
    return usage


@dataclass
class Node:
    """One step of the generation. Fields a stage does not use stay None / empty.

    status: what became of the step — instruction: `ok` | `malformed` | `fallback`; refine: `ok` | `fallback`;
    code/repair/verify: `ok` (ran and produced a valid submission) | `error` | `timeout` | `memory` | `killed` |
    `invalid` | `duplicate` (same script as an earlier node: not run again) | `pending` (not run).
    execution: the sandbox's ExecutionResult as a dict (per fold when the validation split has several).
    validation: {"scheme", "folds", "scores", "reasons"} of the grader on the validation split.
    """

    id: str
    stage: str
    step: int
    parent: str | None = None
    status: str = "pending"
    rank: int | None = None
    attempt: int = 0
    instruction: str | None = None
    sections: dict[str, str | None] | None = None
    code: str | None = None
    plan: dict[str, Any] | None = None
    substitutions: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    execution: dict[str, Any] | list[dict[str, Any]] | None = None
    validation: dict[str, Any] | None = None
    validation_score: float | None = None
    llm: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else round(self.finished_at - self.created_at, 3)

    def finish(self, status: str | None = None, **values: Any) -> Node:
        """Set the outcome fields and the finish time; returns the node."""
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(f"Node has no field {key!r}")
            setattr(self, key, value)
        if status is not None:
            self.status = status
        self.finished_at = time.time()
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Node:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Journal:
    """All nodes of one generation plus the task's metric direction. Thread-safe for `add`."""

    def __init__(
        self,
        task: str,
        metric: str,
        higher_is_better: bool,
        nodes: Sequence[Node] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.metric = metric
        self.higher_is_better = bool(higher_is_better)
        self.nodes: list[Node] = list(nodes)
        self.meta: dict[str, Any] = dict(meta or {})
        self.chosen: str | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- building
    def add(self, stage: str, parent: Node | str | None = None, **values: Any) -> Node:
        """A new node of `stage` (made from `parent`), appended and returned."""
        if stage not in STAGES:
            raise ValueError(f"unknown journal stage {stage!r} (use one of {STAGES})")
        parent_id = parent.id if isinstance(parent, Node) else parent
        with self._lock:
            if parent_id is not None and parent_id not in {n.id for n in self.nodes}:
                raise KeyError(f"parent node {parent_id!r} is not in the journal")
            step = len(self.nodes)
            node = Node(id=f"{step}-{stage}", stage=stage, step=step, parent=parent_id, **values)
            self.nodes.append(node)
        return node

    def choose(self, node: Node | str) -> None:
        """Mark the node whose script (or instruction) is the result of the generation."""
        self.chosen = self[node.id if isinstance(node, Node) else node].id

    # ----------------------------------------------------------------- queries
    def __getitem__(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Any:
        return iter(self.nodes)

    def by_stage(self, *stages: str) -> list[Node]:
        return [n for n in self.nodes if n.stage in stages]

    def children(self, node: Node | str) -> list[Node]:
        node_id = node.id if isinstance(node, Node) else node
        return [n for n in self.nodes if n.parent == node_id]

    def lineage(self, node: Node | str) -> list[Node]:
        """The node and its ancestors, root first."""
        current: Node | None = self[node.id if isinstance(node, Node) else node]
        chain = []
        while current is not None:
            chain.append(current)
            current = self[current.parent] if current.parent else None
        return chain[::-1]

    def better(self, a: float, b: float) -> bool:
        """True when score `a` beats `b` under the task metric's direction."""
        return a > b if self.higher_is_better else a < b

    def best(self, stages: Sequence[str] = ("code", "repair")) -> Node | None:
        """The node with the best validation score among `stages` (earliest wins ties), or None."""
        best: Node | None = None
        for node in self.nodes:
            if node.stage in stages and node.status == "ok" and node.validation_score is not None:
                if best is None or self.better(node.validation_score, best.validation_score):  # type: ignore[arg-type]
                    best = node
        return best

    def summary(self) -> dict[str, Any]:
        """Counts per stage and status (for logs and the run record)."""
        counts: dict[str, dict[str, int]] = {}
        for node in self.nodes:
            per = counts.setdefault(node.stage, {})
            per[node.status] = per.get(node.status, 0) + 1
        return counts

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JOURNAL_VERSION,
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "chosen": self.chosen,
            "meta": self.meta,
            "summary": self.summary(),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Journal:
        if data.get("version") != JOURNAL_VERSION:
            raise PipesynthError(
                f"journal version {data.get('version')!r} is not {JOURNAL_VERSION}",
                "re-run the generation with this version of pipesynth",
            )
        journal = cls(
            task=data["task"],
            metric=data["metric"],
            higher_is_better=data["higher_is_better"],
            nodes=[Node.from_dict(n) for n in data["nodes"]],
            meta=data.get("meta"),
        )
        journal.chosen = data.get("chosen")
        return journal

    def save(self, path: str | Path) -> Path:
        """Write journal.json atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".journal.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1, ensure_ascii=False, default=str)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Journal:
        path = Path(path)
        if not path.is_file():
            raise PipesynthError(f"no journal at {path}", "pass the journal.json of a generation run")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
