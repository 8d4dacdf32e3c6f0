"""Read W&B offline runs back from their files (`<dir>/wandb/offline-run-*/run-<id>.wandb`), without the network.

wandb >= 0.2x writes every run as a LevelDB-style log of protobuf `Record`s (32 KiB blocks, each chunk with a
7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) after a 7-byte `:W&B` file header. The Python SDK no
longer ships a reader (wandb-core does the work), so this module parses the log itself with wandb's own
protobuf classes. Used by tests (the values logged are the values read back) and by `wandb_sync_hint`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run holds: identity, config, final summary, history rows and logged artifacts."""

    path: Path
    run_id: str = ""
    name: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # name, type, files (paths in the artifact)
    exit_code: int | None = None


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log (no :W&B header)")
    pos, out, pending = _HEADER, [], b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _set(target: dict[str, Any], item: Any) -> None:
    keys = list(item.nested_key) or [item.key]
    node = target
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = json.loads(item.value_json)


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse `run_dir` (an `offline-run-*` folder, or its `.wandb` file) into an `OfflineRun`."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = [run_dir] if run_dir.is_file() else sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    run = OfflineRun(path=files[0])
    for raw in _records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.project = r.run_id, r.display_name, r.project
            run.group, run.job_type, run.tags = r.run_group, r.job_type, list(r.tags)
            for item in r.config.update:
                _set(run.config, item)
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, item)
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, item)
            run.history.append(row)
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append(
                {"name": a.name, "type": a.type, "files": [c.path for c in a.manifest.contents]}
            )
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run


def offline_runs(wandb_dir: str | Path) -> list[OfflineRun]:
    """Every offline run under `wandb_dir` (a `wandb/` folder or a folder holding one), oldest first."""
    wandb_dir = Path(wandb_dir)
    if (wandb_dir / "wandb").is_dir():
        wandb_dir = wandb_dir / "wandb"
    return [read_offline_run(p) for p in sorted(wandb_dir.glob("offline-run-*")) if p.is_dir()]
