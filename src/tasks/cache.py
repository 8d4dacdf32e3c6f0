"""The prepared-task cache: `<cache_dir>/tasks/<slug>/seed<seed>/` with a manifest (inputs' fingerprint, row counts, sha256 of every output) that says whether a preparation can be reused."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.tasks.readers import sha256_file
from src.tasks.task import Task

log = logging.getLogger(__name__)

PREPARE_VERSION = (
    3  # bump when the output format or a split rule changes (3: forecasting tasks split by time)
)


@dataclass
class PreparedTask:
    """Where a prepared task lives and the public facts a grader needs."""

    slug: str
    seed: int
    root: Path
    public_dir: Path
    private_dir: Path
    answers_path: Path
    id_column: str
    targets: list[str]
    submission_columns: list[str]
    metric: str
    higher_is_better: bool
    task_type: str
    class_labels: list[Any] | None
    n_train: int
    n_test: int
    split_method: str
    official_test: bool
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @classmethod
    def from_manifest(cls, path: str | Path) -> PreparedTask:
        """Rebuild the object from `<root>/manifest.json` (e.g. in another process)."""
        path = Path(path)
        data = json.loads(path.read_text())
        root = path.parent
        return cls(
            slug=data["slug"],
            seed=data["seed"],
            root=root,
            public_dir=root / "public",
            private_dir=root / "private",
            answers_path=root / "private" / "answers.csv",
            checksums=data["files"],
            **{k: data[k] for k in _FACT_KEYS},
        )


_FACT_KEYS = (
    "id_column",
    "targets",
    "submission_columns",
    "metric",
    "higher_is_better",
    "task_type",
    "class_labels",
    "n_train",
    "n_test",
    "split_method",
    "official_test",
)


def task_fingerprint(task: Task, seed: int) -> dict[str, Any]:
    raw = {}
    if task.raw_dir.is_dir():
        for path in sorted(p for p in task.raw_dir.rglob("*") if p.is_file()):
            raw[str(path.relative_to(task.raw_dir))] = sha256_file(path)
    return {
        "version": PREPARE_VERSION,
        "seed": seed,
        "split": task.split,
        "files": task.files,
        "facts": {
            "id_column": task.id_column,
            "targets": task.targets,
            "metric": task.metric,
            "task_type": task.task_type,
            "data_type": task.data_type,
            "title": task.title,
        },
        "raw": raw,
        "description": sha256_file(task.description_path) if task.description_path.is_file() else None,
    }


def cached_preparation(root: Path, fingerprint: dict[str, Any]) -> PreparedTask | None:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    for rel, digest in data.get("files", {}).items():
        path = root / rel
        if not path.is_file() or sha256_file(path) != digest:
            log.warning("%s: cached file %s changed or vanished; preparing again", root, rel)
            return None
    return PreparedTask.from_manifest(manifest)
