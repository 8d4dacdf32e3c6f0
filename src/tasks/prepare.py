"""Prepare a task: carve public train/test files and private answers out of the raw competition files.

    from src.tasks.prepare import prepare_task
    prepared = prepare_task(task, cache_dir=".cache", seed=0)

Writes `<cache_dir>/tasks/<slug>/seed<seed>/`:
  public/   train.csv (id, features, targets), test.csv (id, features), sample_submission.csv, task.json
            (public facts only), description.md, plus label-free extras named in `files.copy`
  private/  answers.csv (id + target columns) — never copied into a sandbox
  manifest.json  inputs' fingerprint, split, row counts and the sha256 of every output file

Deterministic: the same raw files, config and seed give byte-identical outputs. Idempotent: a second call
whose fingerprint matches and whose outputs still verify returns the cached result without writing.

Leak rules: public files keep only the columns Kaggle's own test has (plus the targets in train), so extra
labels such as bike-sharing's casual/registered never reach a solution; every row is read as text and written
back unchanged, so no value is altered on the way. The split is a `_target_` object from config
(`RandomSplit` — stratified for classification —, `TimeSplit`, `GroupSplit`, `OfficialTestSplit`); public
task.json says which (`split`: kind, group_column, time_columns) so inner validation can mirror it.

Raw tables are read by extension through `files.readers` (CSV; JSON records or JSON lines, nested fields
flattened), optionally with extra tables left-joined by key (`files.join`); public files are always CSV. A
metric scored on one probability column per class gets those columns (named by label, listed as `classes`)
even when the download has no sample submission.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from filelock import FileLock
from hydra.utils import instantiate
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from src.errors import PipesynthError
from src.tasks.metrics import get_metric
from src.tasks.registry import Task

log = logging.getLogger(__name__)

PREPARE_VERSION = 2  # bump when the output format or a split rule changes: cached preparations rebuild
SYNTHETIC_ID = "id"

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


def find_raw_file(task: Task, name: str) -> Path | tuple[Path, str] | None:
    """Where raw file `name` is: `raw/<name>`, or a member of a Kaggle download zip in raw/, or None.

    When `name` itself is absent, the same stem with another readable extension counts (train.csv ->
    train.json / train.jsonl), so a download of JSON records needs no override.
    """
    stem = Path(name).stem
    alternatives = [f"{stem}.{ext}" for ext in (task.files.get("readers") or {}) if f"{stem}.{ext}" != name]
    for candidate in (name, *alternatives):
        found = _find_exact(task, candidate)
        if found is not None:
            return found
    return None


def _find_exact(task: Task, name: str) -> Path | tuple[Path, str] | None:
    direct = task.raw_dir / name
    if direct.is_file():
        return direct
    if not task.raw_dir.is_dir():
        return None
    for archive in sorted(task.raw_dir.glob("*.zip")):
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if Path(member).name == name:
                        return archive, member
        except zipfile.BadZipFile:
            continue
    return None


def _source_name(source: Path | tuple[Path, str]) -> str:
    return Path(source[1]).name if isinstance(source, tuple) else source.name


def _read_source(task: Task, source: Path | tuple[Path, str], nrows: int | None = None) -> pd.DataFrame:
    reader = _reader_for(task, _source_name(source))
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
        return _read_source(task, source)

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


def _raw_names(task: Task) -> set[str]:
    """Base names of the raw files, whether loose in raw/ or inside a Kaggle download zip there."""
    names = {p.name for p in task.raw_dir.glob("*") if p.is_file()}
    for archive in task.raw_dir.glob("*.zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                names |= {Path(m).name for m in zf.namelist() if not m.endswith("/")}
        except zipfile.BadZipFile:
            continue
    return names


def _copy_raw(source: Path | tuple[Path, str], dest: Path) -> None:
    if isinstance(source, tuple):
        archive, member = source
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(source, dest)


def _find_sample_submission(task: Task) -> str | None:
    name = task.files.get("sample_submission")
    if name:
        return str(name)
    candidates = sorted(n for n in _raw_names(task) if n.endswith(".csv") and "ubmission" in n)
    if len(candidates) > 1:
        raise PipesynthError(
            f"task '{task.slug}': several sample submissions in {task.raw_dir}: {candidates}",
            f"name one as files.sample_submission in conf/task_overrides/{task.slug}.yaml",
        )
    return candidates[0] if candidates else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- splitters


def _n_test(n_rows: int, test_fraction: float, max_test_rows: int | None) -> int:
    if not 0 < test_fraction < 1:
        raise PipesynthError(f"split.test_fraction={test_fraction} is not in (0, 1)", "use e.g. 0.2")
    n = int(round(n_rows * test_fraction))
    if max_test_rows:
        n = min(n, int(max_test_rows))
    if n_rows < 2:
        raise PipesynthError(f"only {n_rows} labelled row(s): cannot split", "check the raw training file")
    return min(max(n, 1), n_rows - 1)


def split_facts(
    kind: str, group_column: str | None = None, time_columns: list[str] | None = None
) -> dict[str, Any]:
    """The public `split` entry of task.json: kind (random | stratified | group | time) and its columns."""
    return {"kind": kind, "group_column": group_column, "time_columns": list(time_columns or [])}


class RandomSplit:
    """A seeded random split; stratified by the target labels for classification tasks (stratify=None: auto)."""

    name = "random"

    def __init__(
        self, test_fraction: float = 0.2, max_test_rows: int | None = None, stratify: bool | None = None
    ) -> None:
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows
        self.stratify = stratify

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_test = _n_test(len(labelled), self.test_fraction, self.max_test_rows)
        stratify = task.is_classification if self.stratify is None else self.stratify
        strata = None
        if stratify:
            # one stratum per label combination (multi-label: the tuple of labels); rare ones pooled
            strata = labelled[task.targets[0]].astype(str)
            for target in task.targets[1:]:
                strata = strata + "|" + labelled[target].astype(str)
            counts = strata.value_counts()
            strata = strata.where(~strata.isin(counts[counts < 2].index), "__rare__")
            if strata.nunique() > min(n_test, len(labelled) - n_test) or strata.value_counts().min() < 2:
                log.warning("%s: too few rows per class to stratify; splitting at random", task.slug)
                strata = None
        self.name = "stratified" if strata is not None else "random"
        train_idx, test_idx = train_test_split(
            np.arange(len(labelled)), test_size=n_test, random_state=seed, stratify=strata
        )
        # keep the raw row order inside each part: the split is in which rows, not how they are shuffled
        return labelled.iloc[np.sort(train_idx)], labelled.iloc[np.sort(test_idx)]

    def facts(self, task: Task) -> dict[str, Any]:
        """How the test was carved, for public/task.json (call after split: stratification may fall back)."""
        return split_facts(self.name)


class TimeSplit:
    """The last part of the period is the test (as in forecasting competitions): no test row precedes a train row.

    time_columns are sorted on in order (numbers numerically, other text as datetimes); the cut is moved so
    that rows sharing a time stamp stay on one side.
    """

    name = "time"

    def __init__(
        self, time_columns: list[str], test_fraction: float = 0.2, max_test_rows: int | None = None
    ) -> None:
        if not time_columns:
            raise PipesynthError("TimeSplit needs time_columns", "set split.time_columns: [<column>, ...]")
        self.time_columns = list(time_columns)
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows

    def _key(self, frame: pd.DataFrame, task: Task) -> pd.DataFrame:
        keys = {}
        for col in self.time_columns:
            if col not in frame.columns:
                raise PipesynthError(
                    f"task '{task.slug}': time column '{col}' is not in the training file",
                    f"fix split.time_columns in conf/task_overrides/{task.slug}.yaml",
                )
            numeric = pd.to_numeric(frame[col], errors="coerce")
            keys[col] = numeric if numeric.notna().all() else pd.to_datetime(frame[col], errors="raise")
        return pd.DataFrame(keys, index=frame.index)

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        keys = self._key(labelled, task)
        order = keys.sort_values(self.time_columns, kind="mergesort").index
        ordered = labelled.loc[order]
        key_tuples = list(keys.loc[order].itertuples(index=False, name=None))
        n = len(ordered)
        cut = n - _n_test(n, self.test_fraction, self.max_test_rows)
        # never split a time stamp: move the cut forward (smaller test), else backward
        forward = cut
        while 0 < forward < n and key_tuples[forward] == key_tuples[forward - 1]:
            forward += 1
        if forward < n:
            cut = forward
        else:
            while cut > 0 and key_tuples[cut] == key_tuples[cut - 1]:
                cut -= 1
        if cut in (0, n):
            raise PipesynthError(
                f"task '{task.slug}': all rows share one time stamp", "a time split needs several time stamps"
            )
        return ordered.iloc[:cut], ordered.iloc[cut:]

    def facts(self, task: Task) -> dict[str, Any]:
        return split_facts("time", time_columns=self.time_columns)


class GroupSplit:
    """Whole groups go to one side (e.g. Spaceship Titanic's travel groups, the `gggg` of `gggg_pp`).

    column: the column holding the group; pattern: an optional regex whose first group extracts it.
    """

    name = "group"

    def __init__(
        self,
        column: str,
        pattern: str | None = None,
        test_fraction: float = 0.2,
        max_test_rows: int | None = None,
    ) -> None:
        self.column = column
        self.pattern = pattern
        self.test_fraction = test_fraction
        self.max_test_rows = max_test_rows

    def groups(self, frame: pd.DataFrame, task: Task) -> pd.Series:
        if self.column not in frame.columns:
            raise PipesynthError(
                f"task '{task.slug}': group column '{self.column}' is not in the training file",
                f"fix split.column in conf/task_overrides/{task.slug}.yaml",
            )
        values = frame[self.column]
        if self.pattern:
            extracted = values.str.extract(self.pattern, expand=False)
            values = extracted.fillna(values)  # a value the pattern does not match is its own group
        return values

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_test = _n_test(len(labelled), self.test_fraction, self.max_test_rows)
        splitter = GroupShuffleSplit(n_splits=1, test_size=n_test / len(labelled), random_state=seed)
        train_idx, test_idx = next(splitter.split(labelled, groups=self.groups(labelled, task)))
        return labelled.iloc[np.sort(train_idx)], labelled.iloc[np.sort(test_idx)]

    def facts(self, task: Task) -> dict[str, Any]:
        # the pattern travels too: the group of `gggg_pp` is `gggg`, not the whole (unique) id
        return {**split_facts("group", group_column=self.column), "group_pattern": self.pattern}


class OfficialTestSplit:
    """The competition's own labelled test set (e.g. detecting-insults' test_with_solutions.csv): no new split.

    The public train is the whole raw training file; test_fraction/max_test_rows are accepted and unused.
    """

    name = "official_test"

    def __init__(self, test_file: str, test_fraction: float = 0.2, max_test_rows: int | None = None) -> None:
        self.test_file = test_file

    def split(
        self, labelled: pd.DataFrame, task: Task, seed: int, read_raw: RawReader
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        test = read_raw(self.test_file)
        missing = [t for t in task.targets if t not in test.columns]
        if missing:
            raise PipesynthError(
                f"task '{task.slug}': official test {self.test_file} has no label column(s) {missing}",
                "point split.test_file at the labelled test file",
            )
        return labelled, test

    def facts(self, task: Task) -> dict[str, Any]:
        # the competition's own test: nothing says how it was drawn, so inner validation stays the default
        kind = "stratified" if task.is_classification else "random"
        return {**split_facts(kind), "official_test": True}


# --------------------------------------------------------------------------- prepared task


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


def typed_label(text: str) -> Any:
    """A label as JSON would hold it: "1" -> 1, "TRUE"/"True" -> True, "2.5" -> 2.5, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
        return int(value) if value.is_integer() else value
    except ValueError:
        return text


def _label_text(label: Any) -> str:
    """A label as a column name: the text typed_label reads back as the same label."""
    return json.dumps(label) if isinstance(label, bool) else str(label)


def _sorted_labels(values: pd.Series) -> list[Any]:
    labels = {typed_label(v): None for v in values.unique()}
    return sorted(labels, key=lambda v: (type(v).__name__, v))


def _fingerprint(task: Task, seed: int) -> dict[str, Any]:
    raw = {}
    if task.raw_dir.is_dir():
        for path in sorted(p for p in task.raw_dir.rglob("*") if p.is_file()):
            raw[str(path.relative_to(task.raw_dir))] = _sha256(path)
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
        "description": _sha256(task.description_path) if task.description_path.is_file() else None,
    }


def _cached(root: Path, fingerprint: dict[str, Any]) -> PreparedTask | None:
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
        if not path.is_file() or _sha256(path) != digest:
            log.warning("%s: cached file %s changed or vanished; preparing again", root, rel)
            return None
    return PreparedTask.from_manifest(manifest)


def prepare_task(task: Task, cache_dir: str | Path, seed: int = 0) -> PreparedTask:
    """Prepare `task` under `<cache_dir>/tasks/<slug>/seed<seed>/` (cached; rebuilt when inputs change)."""
    task.require_data()
    root = Path(cache_dir) / "tasks" / task.slug / f"seed{seed}"
    fingerprint = _fingerprint(task, seed)
    cached = _cached(root, fingerprint)
    if cached is not None:
        return cached

    root.parent.mkdir(parents=True, exist_ok=True)
    # one preparer at a time per task and seed (launcher jobs, test workers): the others wait, then find it cached
    # instead of swapping a second copy in under a reader
    with FileLock(str(root.parent / f".{root.name}.lock")):
        cached = _cached(root, fingerprint)
        if cached is not None:
            return cached
        # build beside the target, then swap it in, so a reader never sees a half-written preparation
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            facts = _build(task, seed, tmp, fingerprint)
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            if root.exists():
                root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "prepared %s (seed %d): %d train / %d test rows", task.slug, seed, facts["n_train"], facts["n_test"]
    )
    return PreparedTask.from_manifest(root / "manifest.json")


def _build(task: Task, seed: int, out: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    read_raw = raw_reader(task)
    read_table = table_reader(task)
    metric = get_metric(task.metric)
    labelled = read_table(task.files["train"])
    where = f"task '{task.slug}' ({task.raw_dir / task.files['train']})"
    missing = [c for c in [*task.targets, *([task.id_column] if task.id_column else [])] if c not in labelled]
    if missing:
        raise PipesynthError(
            f"{where} has no column(s) {missing}", "fix id_column/targets in task.json or files.train"
        )

    # rows without a label cannot be graded (e.g. the rows to impute in an imputation competition)
    unlabelled = (labelled[task.targets].apply(lambda s: s.str.strip()) == "").any(axis=1)
    labelled = labelled.loc[~unlabelled]

    id_col = task.id_column or (SYNTHETIC_ID if SYNTHETIC_ID not in labelled.columns else "row_id")
    synthetic_id = task.id_column is None

    # features: the columns of Kaggle's own (unlabelled) test file, which defines what a solution may see
    test_name = task.files.get("test")
    if test_name and find_raw_file(task, str(test_name)) is not None:
        source = find_raw_file(task, str(test_name))
        assert source is not None
        header = list(
            read_table(str(test_name)).columns
            if task.files.get("join")
            else _read_source(task, source, nrows=0).columns
        )
        features = [c for c in header if c != id_col]
        absent = [c for c in features if c not in labelled.columns]
        if absent:
            raise PipesynthError(
                f"{where}: test file {test_name} has column(s) {absent} that the training file lacks",
                f"check files.train/files.test in conf/task_overrides/{task.slug}.yaml",
            )
    else:
        features = [c for c in labelled.columns if c not in (id_col, *task.targets)]
    dropped = [c for c in labelled.columns if c not in (id_col, *features, *task.targets)]

    try:
        splitter = instantiate(task.split)
    except Exception as err:  # a bad _target_ or argument: say which config to fix, not a Hydra traceback
        raise PipesynthError(
            f"task '{task.slug}': cannot build its splitter from {task.split} ({err})",
            f"fix `split` in conf/task_overrides/{task.slug}.yaml or in the suite config",
        ) from None
    train, test = splitter.split(labelled, task, seed, read_table)
    absent = [c for c in features if c not in test.columns]
    if absent:
        raise PipesynthError(
            f"{where}: the labelled test lacks feature column(s) {absent}", "check the split"
        )
    test = test.loc[(test[task.targets].apply(lambda s: s.str.strip()) != "").all(axis=1)]
    train, test = train.copy(), test.copy()
    if synthetic_id:
        # the competition had no id: number the rows, test after train, so ids are disjoint by construction
        train.insert(0, id_col, [str(i) for i in range(len(train))])
        test.insert(0, id_col, [str(len(train) + i) for i in range(len(test))])
    for name, part in (("train", train), ("test", test)):
        if part[id_col].duplicated().any():
            raise PipesynthError(
                f"{where}: id column '{id_col}' has duplicate values in the {name} part",
                "set id_column to a unique column (or null to number the rows)",
            )
    if set(train[id_col]) & set(test[id_col]):
        raise PipesynthError(f"{where}: train and test share ids", "the official test must be disjoint")

    # submission columns: Kaggle's sample submission where there is one, else the targets
    sample_name = _find_sample_submission(task)
    class_labels = _sorted_labels(labelled[task.targets].stack()) if task.is_classification else None
    per_class = metric.per_class and len(task.targets) == 1 and class_labels is not None
    submission_columns = list(task.targets)
    if sample_name:
        sample_cols = list(read_raw(sample_name).columns)
        submission_columns = [c for c in sample_cols if c not in (id_col, task.id_column)]
    if per_class and submission_columns == list(task.targets):
        # no sample submission (or one with just the label column), but the metric scores one probability
        # column per class: name them by label, in the labels' sorted order
        submission_columns = [_label_text(label) for label in class_labels or []]

    if set(submission_columns) != set(task.targets):
        # the only other shape allowed: one probability column per class of a single target (log loss)
        if not (
            per_class
            and class_labels is not None
            and {typed_label(c) for c in submission_columns} == set(class_labels)
        ):
            raise PipesynthError(
                f"{where}: sample submission columns {submission_columns} are neither the targets "
                f"{task.targets} nor the class labels {class_labels}",
                f"set files.sample_submission in conf/task_overrides/{task.slug}.yaml or fix targets in task.json",
            )
        class_labels = list(submission_columns)  # the order the submission's columns come in

    public, private = out / "public", out / "private"
    public.mkdir(parents=True)
    private.mkdir(parents=True)
    os.chmod(private, 0o700)  # defence in depth: the sandbox runs as another user and must not read this

    train[[id_col, *features, *task.targets]].to_csv(public / "train.csv", index=False, lineterminator="\n")
    test[[id_col, *features]].to_csv(public / "test.csv", index=False, lineterminator="\n")
    test[[id_col, *task.targets]].to_csv(private / "answers.csv", index=False, lineterminator="\n")
    _sample_submission(train, test, id_col, task, metric.prediction, submission_columns).to_csv(
        public / "sample_submission.csv", index=False, lineterminator="\n"
    )
    if task.description_path.is_file():
        shutil.copyfile(task.description_path, public / "description.md")
    else:
        (public / "description.md").write_text(f"# {task.title}\n")
    for name in task.files.get("copy") or []:
        source = find_raw_file(task, str(name))
        if source is None:
            raise PipesynthError(
                f"task '{task.slug}': file {name} to copy is not in {task.raw_dir}",
                f"fix files.copy in conf/task_overrides/{task.slug}.yaml",
            )
        _copy_raw(source, public / Path(str(name)).name)

    public_facts: dict[str, Any] = {
        "slug": task.slug,
        "title": task.title,
        "data_type": task.data_type,
        "task_type": task.task_type,
        "id_column": id_col,
        "targets": task.targets,
        "submission_columns": submission_columns,
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
    }
    if class_labels is not None:
        public_facts["class_labels"] = class_labels
    if set(submission_columns) != set(task.targets):
        public_facts["classes"] = class_labels  # one probability column per class, in submission order
    public_facts["split"] = splitter.facts(task)
    (public / "task.json").write_text(json.dumps(public_facts, indent=2) + "\n")

    facts = {
        **{k: public_facts[k] for k in ("id_column", "targets", "submission_columns", "metric")},
        "higher_is_better": metric.higher_is_better,
        "task_type": task.task_type,
        "class_labels": class_labels,
        "n_train": len(train),
        "n_test": len(test),
        "split_method": splitter.name,
        "official_test": isinstance(splitter, OfficialTestSplit),
    }
    files = {
        str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file() and p.parent != out
    }
    manifest = {
        "slug": task.slug,
        "seed": seed,
        **facts,
        "synthetic_id": synthetic_id,
        "dropped_columns": dropped,
        "dropped_unlabelled_rows": int(unlabelled.sum()),
        "split": public_facts["split"],
        "fingerprint": fingerprint,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return facts


def _sample_submission(
    train: pd.DataFrame, test: pd.DataFrame, id_col: str, task: Task, prediction: str, columns: list[str]
) -> pd.DataFrame:
    """A valid, uninformed submission: uniform probabilities, 0.5 scores, a label, or the training median."""
    sample = pd.DataFrame({id_col: test[id_col].to_numpy()})
    for col in columns:
        if col not in task.targets:  # a class probability column
            sample[col] = 1.0 / len(columns)
        elif prediction == "probability":
            sample[col] = 0.5
        elif prediction == "label":
            sample[col] = sorted(train[col].unique())[0]
        else:
            sample[col] = round(float(pd.to_numeric(train[col]).median()), 8)  # round: no 1.91334999..
    return sample


def prepared_summary(prepared: PreparedTask) -> dict[str, Any]:
    """The manifest's facts as a plain dict (for logs and reports)."""
    data = asdict(prepared)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items() if k != "checksums"}
