"""A task as pipesynth holds it: its facts (task.json), the project's config for it (split, files, leaderboard),
and where its raw files are (a loose file, or a member of a Kaggle zip in raw/)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config import REPO_ROOT
from src.errors import PipesynthError

CLASSIFICATION_TYPES = ("binary_classification", "multiclass_classification", "multilabel_classification")
TASK_TYPES = (*CLASSIFICATION_TYPES, "regression")
# what the compiler and the search can learn from (docs/tasks.md); time_series is tabular rows in time order
DATA_TYPES = ("tabular", "text", "time_series")

# Used when neither the suite nor conf/task_overrides/<slug>.yaml says otherwise (the suites compose the same
# file): a seeded random split of raw/train.csv, stratified by the labels for classification tasks, capped.
DEFAULT_SPLIT_PATH = REPO_ROOT / "conf" / "split" / "default.yaml"
DEFAULT_SPLIT: dict[str, Any] = OmegaConf.to_container(OmegaConf.load(DEFAULT_SPLIT_PATH))  # type: ignore[assignment]
DEFAULT_FILES: dict[str, Any] = {
    "train": "train.csv",  # the labelled file the split is carved from
    "test": "test.csv",  # Kaggle's unlabelled test: its columns say which features a solution may see
    "sample_submission": None,  # None: the one raw/*ubmission*.csv, if any
    "copy": [],  # label-free extra files copied into public/ as they are (e.g. a data dictionary)
    # extra tables left-joined by key onto train and test before the split: [{file, key, columns (optional)}]
    "join": [],
    # how a raw table is read, by file extension (an override adds or replaces single extensions)
    "readers": {
        "csv": {"_target_": "src.tasks.readers.CsvReader"},
        "json": {"_target_": "src.tasks.readers.JsonReader"},
        "jsonl": {"_target_": "src.tasks.readers.JsonReader", "lines": True},
        "ndjson": {"_target_": "src.tasks.readers.JsonReader", "lines": True},
    },
}


@dataclass
class Task:
    """One competition: its facts (task.json) plus the project's config for it (split, files, leaderboard)."""

    slug: str
    title: str
    data_type: str
    task_type: str
    id_column: str | None
    targets: list[str]
    metric: str
    higher_is_better: bool
    root: Path
    teams: int | None = None
    notes: list[str] = field(default_factory=list)
    leaderboard_source: str | None = None
    split: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPLIT))
    split_overridden: bool = (
        False  # conf/task_overrides/<slug>.yaml sets `split` (no split chosen from the data)
    )
    files: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FILES))
    # caveats of the real leaderboard, declared in config (e.g. ["rolling", "leaked"]) with a note
    leaderboard_flags: list[str] = field(default_factory=list)
    leaderboard_note: str | None = None

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def description_path(self) -> Path:
        return self.root / "description.md"

    @property
    def leaderboard_path(self) -> Path:
        return self.root / "leaderboard.csv"

    @property
    def has_leaderboard(self) -> bool:
        return self.leaderboard_path.is_file()

    @property
    def is_classification(self) -> bool:
        return self.task_type in CLASSIFICATION_TYPES

    @property
    def download_command(self) -> str:
        return f"kaggle competitions download -c {self.slug} -p {self.raw_dir}"

    @property
    def has_data(self) -> bool:
        """True when the labelled training file is present in raw/ (as a file or inside a Kaggle zip)."""
        return find_raw_file(self, self.files["train"]) is not None

    def require_data(self) -> None:
        """Raise one clear error naming the folder expected and the Kaggle command that fills it."""
        if not self.has_data:
            raise PipesynthError(
                f"task '{self.slug}' has no data: expected {self.files['train']} (or the same name as "
                f"{'/'.join(self.files.get('readers') or {})}) in {self.raw_dir}",
                f"download it with `{self.download_command}` (accept the competition rules on kaggle.com "
                f"first); the zip may stay as it is or be unzipped there",
            )


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
