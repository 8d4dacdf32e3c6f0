"""Instruction text as the pipeline handles it: ranked candidates, their sections, plain-text descriptions, the prompt's task fields."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from src.corpus.instruction import Instruction
from src.corpus.metric_categories import MetricCategories
from src.corpus.prompts import to_corpus_data_type

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One ranked instruction as the pipeline uses it."""

    rank: int
    text: str
    instruction: Instruction
    node_id: str
    attempts: int
    fallback: bool = False
    source: str = "model"  # "model" | "retrieved" (retrieval=candidates: a corpus neighbour's rank-1 text)

    @property
    def sections(self) -> dict[str, str | None]:
        return sections_of(self.instruction)


def sections_of(instruction: Instruction) -> dict[str, str | None]:
    return {
        "preprocessing": instruction.preprocessing,
        "architecture": instruction.architecture,
        "training": instruction.training,
        "prediction": instruction.prediction,
    }


def cut_words(text: str, max_chars: int) -> str:
    """The longest word-boundary prefix of `text` with at most `max_chars` characters."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_MARKUP = re.compile(r"\*\*|__|`+|<[^>]{1,40}>")
_JOINERS = {"\u200d", "\ufe0f", "\ufe0e"}


def plain_description(text: str) -> str:
    """A Kaggle description.md as the plain one-paragraph text the corpus descriptions are: markdown images,
    link targets, heading marks and emphasis dropped, emoji and other pictographs removed, whitespace collapsed.
    """
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _HEADING.sub("", text)
    text = _MARKUP.sub("", text)
    text = "".join(
        ch for ch in text if ch not in _JOINERS and unicodedata.category(ch) not in ("So", "Cs", "Co", "Cn")
    )
    return " ".join(text.split())


def task_prompt_fields(facts: dict[str, Any], categories: MetricCategories) -> tuple[str, str]:
    """(data type in corpus spelling, metric category) of a task, as the training prompts wrote them."""
    data_type = to_corpus_data_type(str(facts["data_type"]))
    if facts.get("metric_category"):  # a corpus competition (benchmarks) names its category itself
        return data_type, str(facts["metric_category"])
    metric = str(facts["metric"])
    category = categories.category_for_task_metric(metric)
    if category is None:
        log.warning(
            "metric %r has no corpus category in %s: the prompt names it as is", metric, categories.source
        )
        category = metric
    return data_type, category


def well_formed(instruction: Instruction, min_chars: int = 0) -> bool:
    """All core sections present (and the text not trivially short)."""
    return instruction.is_complete and len(instruction.text) >= min_chars
