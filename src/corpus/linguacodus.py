"""Loader of the paper's released training sample (result_prompts_new.csv: row index, `prompt`, `kaggle_id`).

Each `prompt` is a Llama-2 chat block; its fields are read back out of the wording:

    ... writing the <rank> place instruction for solving this machine learning task. Task: <description>
    The <data type> data is used for the problem. The metric type is <metric category> for the problem. ... [/INST]
    <instruction></s>

`kaggle_id` identifies a notebook, not a competition; the competition id is derived from the description text
(`competition_id`), which is what the train/validation split groups by.

    ds, report = load_linguacodus("../shared/data/linguacodus/result_prompts_new.csv")
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pandas as pd
from datasets import Dataset, Features, Value

from src.corpus.instruction import SECTIONS, ParseReport, parse_instruction
from src.corpus.ranks import parse_rank
from src.errors import PipesynthError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("prompt", "kaggle_id")
FEATURES = Features(
    {
        "kernel_id": Value("string"),
        "competition": Value("string"),
        "description": Value("string"),
        "data_type": Value("string"),
        "metric_category": Value("string"),
        "rank": Value("int64"),
        "instruction": Value("string"),
        **{key: Value("string") for key in SECTIONS},
        "is_complete": Value("bool"),
    }
)

_RANK = re.compile(r"writing the (?P<rank>\S+) place instruction for solving this machine learning task\.")
# greedy description: the data-type sentence is the LAST one of the prompt (descriptions contain "\nThe ...")
_TASK = re.compile(
    r"\bTask: (?P<description>.*)\nThe (?P<data_type>[^\n]+?) data is used for the problem\. "
    r"The metric type is (?P<metric>[^\s.]+) for the problem\.",
    re.DOTALL,
)


def rows_to_dataset(rows: list[dict[str, object]]) -> Dataset:
    """Rows (dicts with the FEATURES keys) as a Dataset; an empty list gives an empty Dataset with the schema."""
    return Dataset.from_dict({name: [row[name] for row in rows] for name in FEATURES}, features=FEATURES)


def competition_id(description: str) -> str:
    """A stable, readable id for a task description: first words as a slug + a short hash of the whole text."""
    text = " ".join(description.split())
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    slug = "-".join(re.findall(r"[a-z0-9]+", text.lower())[:5])
    return f"{slug}-{digest}" if slug else digest


def parse_release_prompt(prompt: str) -> dict[str, object]:
    """The fields of one release prompt; raises ValueError with the reason when a field cannot be read."""
    if "[/INST]" not in prompt:
        raise ValueError("no [/INST] separator")
    head, instruction = prompt.split("[/INST]", 1)
    instruction = instruction.strip()
    if instruction.endswith("</s>"):
        instruction = instruction[: -len("</s>")].rstrip()
    if not instruction:
        raise ValueError("empty instruction after [/INST]")
    rank_match = _RANK.search(head)
    if rank_match is None:
        raise ValueError("no 'writing the <N> place instruction' sentence")
    try:
        rank = parse_rank(rank_match.group("rank"))
    except PipesynthError:
        raise ValueError(f"unreadable rank {rank_match.group('rank')!r}") from None
    task = _TASK.search(head, rank_match.end())
    if task is None:
        raise ValueError("no 'Task: ... The <type> data is used ... The metric type is <m>' sentences")
    if not task.group("description").strip():
        raise ValueError("empty task description")
    return {
        "description": task.group("description"),
        "data_type": task.group("data_type"),
        "metric_category": task.group("metric"),
        "rank": rank,
        "instruction": instruction,
    }


def read_release_csv(path: str | Path) -> pd.DataFrame:
    """The CSV as a DataFrame, with a PipesynthError for a missing file or column."""
    path = Path(path)
    if not path.is_file():
        raise PipesynthError(
            f"Linguacodus corpus CSV '{path}' does not exist",
            "set paths.corpus_path (or data.source.path) to result_prompts_new.csv, e.g. "
            "../shared/data/linguacodus/result_prompts_new.csv",
        )
    frame = pd.read_csv(path, dtype={"kaggle_id": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise PipesynthError(
            f"corpus CSV '{path}' lacks column(s) {missing} (found: {list(frame.columns)})",
            f"use the Linguacodus release file, whose columns include {list(REQUIRED_COLUMNS)}",
        )
    return frame


def load_linguacodus(path: str | Path) -> tuple[Dataset, ParseReport]:
    """All usable rows as a Dataset (FEATURES), plus a ParseReport; failed rows are logged, not kept."""
    frame = read_release_csv(path)
    report = ParseReport(source=Path(path).name)
    rows = []
    for position, (prompt, kaggle_id) in enumerate(zip(frame["prompt"], frame["kaggle_id"], strict=True)):
        row_id = str(kaggle_id) if pd.notna(kaggle_id) else f"row {position}"
        try:
            if not isinstance(prompt, str):
                raise ValueError("empty prompt cell")
            if pd.isna(kaggle_id):
                raise ValueError("empty kaggle_id")
            fields = parse_release_prompt(prompt)
        except ValueError as err:
            report.add(row_id, None, str(err))
            continue
        instruction = parse_instruction(str(fields["instruction"]))
        report.add(row_id, instruction)
        rows.append(
            {
                "kernel_id": row_id,
                "competition": competition_id(str(fields["description"])),
                **fields,
                **{key: getattr(instruction, key) or "" for key in SECTIONS},
                "is_complete": instruction.is_complete,
            }
        )
    report.log(log)
    return rows_to_dataset(rows), report


class LinguacodusSource:
    """`cfg.data.source` for the release CSV: `load() -> (Dataset, ParseReport)`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> tuple[Dataset, ParseReport]:
        return load_linguacodus(self.path)
