"""A run's input folder assembled from links: the task's public files plus derived, label-free inputs.

A search caches slow derived features (sentence embeddings of the public texts) and hands them on as
`input/<folder>/`; the build keeps them in `<build>/derived/`, so the final run of the chosen script reads them
instead of computing them again. The sandbox copies `input/` (links followed), so the jail still sees files only.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

DERIVED_DIR = "derived"  # a build's derived inputs: one folder per cache (e.g. embeddings/)


def overlay_inputs(
    public_dir: Path, target: Path, derived: Path | None = None, skip: Iterable[str] = ()
) -> Path:
    """`target` with a link to each public file (but `skip`) and to each folder under `derived`."""
    target.mkdir(parents=True, exist_ok=True)
    skipped = set(skip)
    entries = [e for e in Path(public_dir).iterdir() if e.name not in skipped]
    if derived is not None and derived.is_dir():
        entries += [e for e in derived.iterdir() if e.is_dir()]
    for entry in entries:
        link = target / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return target


def keep_derived(source: Path, folders: Iterable[str], destination: Path) -> None:
    """Move the derived cache `folders` found in `source` into `destination` (what a build keeps)."""
    for folder in folders:
        found = source / folder
        if found.is_dir() and not found.is_symlink() and any(found.iterdir()):
            destination.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(destination / folder, ignore_errors=True)
            shutil.move(str(found), str(destination / folder))
