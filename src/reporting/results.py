"""results.jsonl: one JSON record per (task, solution, seed), written atomically, readable for resume.

Every write rewrites the whole file into a temporary sibling and renames it over the original, so a run
killed at any moment leaves either the old or the new file, never a half-written record. Writers in other
processes (one cluster job per task x seed x variant, all on one store) are serialised by an exclusive
`flock` on `<file>.lock`, and each write first merges what the others wrote, so no record is lost or
duplicated. flock needs a file system that honours it across hosts (local disks, Lustre, GPFS, NFSv4 with
locking); on one without it, give each job its own store and merge them with `python -m src.tables`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RecordKey = tuple[str, str, int]


def inputs_digest(solution_cfg: Any, provider: Any, task: Any, split_seed: int) -> str:
    """A digest of what a record's result depends on: the resolved solution config, the script file a file
    solution runs, and the task's prepared inputs (its fingerprint: facts, split, raw files, description)."""
    from omegaconf import OmegaConf

    from src.tasks.cache import task_fingerprint

    script = getattr(provider, "path", None)
    parts = {
        "solution": OmegaConf.to_container(solution_cfg, resolve=True)
        if OmegaConf.is_config(solution_cfg)
        else solution_cfg,
        "script": hashlib.sha256(Path(script).read_bytes()).hexdigest()
        if script and Path(script).is_file()
        else None,
        "task": task_fingerprint(task, split_seed),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_key(record: dict[str, Any]) -> RecordKey:
    """The identity of a record: (task, solution, seed)."""
    return (str(record["task"]), str(record["solution"]), int(record["seed"]))


class ResultsStore:
    """Thread-safe, crash-safe store of finished records in a JSON-lines file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._records: dict[RecordKey, dict[str, Any]] = {}
        self._records.update(self._read())

    def _read(self) -> dict[RecordKey, dict[str, Any]]:
        records: dict[RecordKey, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        for line_no, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:  # only possible if someone edited the file by hand
                raise ValueError(
                    f"{self.path}:{line_no} is not valid JSON ({err}); remove that line"
                ) from err
            records[record_key(record)] = record
        return records

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive across processes (and hosts, where the file system supports flock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def __contains__(self, key: RecordKey) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: RecordKey) -> dict[str, Any] | None:
        return self._records.get(key)

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def refresh(self) -> None:
        """Re-read the file (records other processes added since)."""
        with self._lock, self._file_lock():
            self._records.update(self._read())

    def add(self, record: dict[str, Any]) -> None:
        """Add (or replace) one record and persist the whole file atomically, merged with what other
        processes wrote since this store last looked."""
        with self._lock, self._file_lock():
            self._records.update(self._read())
            self._records[record_key(record)] = record
            self._write(self._records.values())

    def _write(self, records: Iterable[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                for record in records:
                    handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def mean_beaten(records: Iterable[dict[str, Any]]) -> float:
    """The suite's objective for sweeps: mean fraction of leaderboard teams beaten, an unrated run counting 0."""
    values = [float((r.get("rating") or {}).get("beaten_fraction") or 0.0) for r in records]
    return sum(values) / len(values) if values else 0.0
