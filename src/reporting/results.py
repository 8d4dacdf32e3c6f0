"""results.jsonl: one JSON record per (task, solution, seed), written atomically, readable for resume.

Every write rewrites the whole file into a temporary sibling and renames it over the original, so a run
killed at any moment leaves either the old or the new file, never a half-written record.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RecordKey = tuple[str, str, int]


def record_key(record: dict[str, Any]) -> RecordKey:
    """The identity of a record: (task, solution, seed)."""
    return (str(record["task"]), str(record["solution"]), int(record["seed"]))


class ResultsStore:
    """Thread-safe, crash-safe store of finished records in a JSON-lines file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._records: dict[RecordKey, dict[str, Any]] = {}
        if self.path.exists():
            for line_no, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:  # only possible if someone edited the file by hand
                    raise ValueError(
                        f"{self.path}:{line_no} is not valid JSON ({err}); remove that line"
                    ) from err
                self._records[record_key(record)] = record

    def __contains__(self, key: RecordKey) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def add(self, record: dict[str, Any]) -> None:
        """Add (or replace) one record and persist the whole file atomically."""
        with self._lock:
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
