"""Reading a task's raw tables: every value as its raw text, by extension (`files.readers`: CSV; JSON records or JSON lines, nested fields flattened), with extra tables left-joined by key (`files.join`)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
from hydra.utils import instantiate

from src.errors import PipesynthError
from src.tasks.task import Task, find_raw_file

RawReader = Callable[[str], pd.DataFrame]


class CsvReader:
    """A CSV file, every value as its raw text: nothing is re-typed or re-formatted on the way."""

    def __call__(self, fh: BinaryIO, nrows: int | None = None) -> pd.DataFrame:
        return pd.read_csv(fh, dtype=str, keep_default_na=False, na_filter=False, nrows=nrows)


class JsonReader:
    """JSON records (a list of objects, or one object holding such a list) or JSON lines (one object a line).

    Nested objects are flattened into `parent<sep>child` columns; lists stay one column holding their JSON
    text; numbers keep the digits the file has (parsed as text), strings of any length stay text, null is
    empty. lines=None: JSON lines when the document is not one JSON value.
    """

    def __init__(self, lines: bool | None = None, sep: str = ".") -> None:
        self.lines = lines
        self.sep = sep

    def _records(self, text: str) -> list[Any]:
        parse = {"parse_float": str, "parse_int": str, "parse_constant": str}
        if self.lines is not True:
            try:
                doc = json.loads(text, **parse)
            except json.JSONDecodeError:
                if self.lines is False:
                    raise
            else:
                if isinstance(doc, dict):
                    # {"data": [...]}: the one list of records inside; else a single record
                    lists = [
                        v for v in doc.values() if isinstance(v, list) and all(isinstance(r, dict) for r in v)
                    ]
                    doc = lists[0] if len(lists) == 1 else [doc]
                return list(doc)
        return [json.loads(line, **parse) for line in text.splitlines() if line.strip()]

    def _flatten(self, record: dict[str, Any], prefix: str, out: dict[str, str]) -> dict[str, str]:
        for key, value in record.items():
            name = f"{prefix}{self.sep}{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                self._flatten(value, name, out)
            elif isinstance(value, str):
                out[name] = value
            elif value is None:
                out[name] = ""
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            else:  # a list (or an empty object): its JSON text, one cell
                out[name] = json.dumps(value, ensure_ascii=False)
        return out

    def __call__(self, fh: BinaryIO, nrows: int | None = None) -> pd.DataFrame:
        records = self._records(fh.read().decode("utf-8"))
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("expected JSON objects (one per row)")
        rows = [self._flatten(r, "", {}) for r in records]
        columns = list(dict.fromkeys(name for row in rows for name in row))  # first-seen order, all rows
        frame = pd.DataFrame(rows[:nrows] if nrows is not None else rows, columns=columns, dtype=object)
        return frame.fillna("").astype(str)


def _reader_for(task: Task, name: str) -> Callable[..., pd.DataFrame]:
    """The reader configured for a file's extension (`files.readers`: extension -> `_target_` config)."""
    readers = task.files.get("readers") or {}
    extension = Path(name).suffix.lstrip(".").lower()
    if extension not in readers:
        raise PipesynthError(
            f"task '{task.slug}': no reader for '{name}' (known extensions: {sorted(readers)})",
            f"add files.readers.{extension or '<ext>'}: {{_target_: ...}} in conf/task_overrides/{task.slug}.yaml",
        )
    return _instantiate_reader(json.dumps(readers[extension], sort_keys=True))


@lru_cache(maxsize=32)
def _instantiate_reader(spec: str) -> Callable[..., pd.DataFrame]:
    return instantiate(json.loads(spec))


def source_name(source: Path | tuple[Path, str]) -> str:
    return Path(source[1]).name if isinstance(source, tuple) else source.name


def read_source(task: Task, source: Path | tuple[Path, str], nrows: int | None = None) -> pd.DataFrame:
    reader = _reader_for(task, source_name(source))
    try:
        if isinstance(source, tuple):
            archive, member = source
            with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
                return reader(fh, nrows=nrows)
        with open(source, "rb") as fh:
            return reader(fh, nrows=nrows)
    except PipesynthError:
        raise
    except Exception as err:  # a malformed file: name it, not a parser traceback
        where = f"{source[0]}:{source[1]}" if isinstance(source, tuple) else str(source)
        raise PipesynthError(
            f"task '{task.slug}': cannot read {where} ({type(err).__name__}: {str(err).strip()[:200]})",
            f"fix the file or its reader in files.readers of conf/task_overrides/{task.slug}.yaml",
        ) from None


def _read_csv(source: Path | tuple[Path, str], nrows: int | None = None) -> pd.DataFrame:
    # kept for callers that read a known CSV (e.g. a sample submission's header)
    if isinstance(source, tuple):
        archive, member = source
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
            return CsvReader()(fh, nrows=nrows)
    with open(source, "rb") as fh:
        return CsvReader()(fh, nrows=nrows)


def raw_reader(task: Task) -> RawReader:
    """A function reading `raw/<name>` of this task as text columns; a clear error when it is missing."""

    def read(name: str) -> pd.DataFrame:
        source = find_raw_file(task, name)
        if source is None:
            raise PipesynthError(
                f"task '{task.slug}': raw file {name} not found in {task.raw_dir}",
                f"download the competition data with `{task.download_command}` or fix files in "
                f"conf/task_overrides/{task.slug}.yaml",
            )
        return read_source(task, source)

    return read


def table_reader(task: Task) -> RawReader:
    """Like raw_reader, plus the tables named in `files.join` merged in (for train, test and labelled test)."""
    read = raw_reader(task)
    joins = list(task.files.get("join") or [])

    def read_table(name: str) -> pd.DataFrame:
        frame = read(name)
        for spec in joins:
            frame = _join(task, frame, spec, read)
        return frame

    return read_table


def _join(task: Task, frame: pd.DataFrame, spec: dict[str, Any], read: RawReader) -> pd.DataFrame:
    """Left-join one extra table onto `frame` by key column(s): `{file, key, columns (optional)}`.

    (`key`, not `on`: YAML 1.1 reads a bare `on` as the boolean true.)
    """
    fix = f"fix files.join in conf/task_overrides/{task.slug}.yaml"
    if not isinstance(spec, dict) or not spec.get("file") or not spec.get("key"):
        raise PipesynthError(f"task '{task.slug}': files.join entry {spec} needs `file` and `key`", fix)
    name = str(spec["file"])
    keys = [spec["key"]] if isinstance(spec["key"], str) else [str(k) for k in spec["key"]]
    extra = read(name)
    for side, table in (("the main table", frame), (name, extra)):
        absent = [k for k in keys if k not in table.columns]
        if absent:
            raise PipesynthError(f"task '{task.slug}': join key(s) {absent} are not in {side}", fix)
    columns = [str(c) for c in spec.get("columns") or [c for c in extra.columns if c not in keys]]
    absent = [c for c in columns if c not in extra.columns]
    if absent:
        raise PipesynthError(f"task '{task.slug}': {name} has no column(s) {absent}", fix)
    clash = [c for c in columns if c in frame.columns]
    if clash:
        raise PipesynthError(
            f"task '{task.slug}': joining {name} would duplicate column(s) {clash}",
            f"list the columns to bring in files.join[].columns of conf/task_overrides/{task.slug}.yaml",
        )
    extra = extra[[*keys, *columns]]
    if extra.duplicated(keys).any():
        raise PipesynthError(
            f"task '{task.slug}': {name} has several rows per {keys}: a join would duplicate rows",
            "join a table with one row per key (aggregate it first)",
        )
    merged = frame.merge(extra, on=keys, how="left", sort=False, validate="many_to_one")
    merged[columns] = merged[columns].fillna("")  # a key without a match: empty text, like a blank CSV cell
    merged.index = frame.index
    return merged


def raw_names(task: Task) -> set[str]:
    """Base names of the raw files, whether loose in raw/ or inside a Kaggle download zip there."""
    names = {p.name for p in task.raw_dir.glob("*") if p.is_file()}
    for archive in task.raw_dir.glob("*.zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                names |= {Path(m).name for m in zf.namelist() if not m.endswith("/")}
        except zipfile.BadZipFile:
            continue
    return names


def copy_raw(source: Path | tuple[Path, str], dest: Path) -> None:
    if isinstance(source, tuple):
        archive, member = source
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(source, dest)


def find_sample_submission(task: Task) -> str | None:
    name = task.files.get("sample_submission")
    if name:
        return str(name)
    candidates = sorted(n for n in raw_names(task) if n.endswith(".csv") and "ubmission" in n)
    if len(candidates) > 1:
        raise PipesynthError(
            f"task '{task.slug}': several sample submissions in {task.raw_dir}: {candidates}",
            f"name one as files.sample_submission in conf/task_overrides/{task.slug}.yaml",
        )
    return candidates[0] if candidates else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
