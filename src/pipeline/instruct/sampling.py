"""Guided sampling: the headings the sampler writes itself and the section bodies the model fills (data: conf/prompt/sections/)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from src.corpus.instruction import CORE_SECTIONS, _heading, parse_instruction
from src.errors import PipesynthError

log = logging.getLogger(__name__)


SAMPLING_MODES = ("free", "guided")
RETRIEVAL_MODES = ("none", "context", "candidates", "only")
DECIDE_MODES = ("model", "vote")


@dataclass(frozen=True)
class GuidedSection:
    """One heading the guided sampler writes itself, and the token budget of the body the model writes."""

    key: str
    heading: str
    max_tokens: int


def guided_sections(cfg: Mapping[str, Any] | None) -> list[GuidedSection]:
    """The `sections.headings` mapping (key -> {text, max_tokens}) as an ordered list; it must cover the core
    sections, since a guided sample is well formed by construction only if the sampler writes all of them."""
    headings = dict((cfg or {}).get("headings") or {})
    out = [
        GuidedSection(str(key), str(v["text"]), int(v["max_tokens"]))
        for key, v in headings.items()
        if v is not None
    ]
    missing = [k for k in CORE_SECTIONS if k not in {s.key for s in out}]
    bad = [s.heading for s in out if parse_instruction(f"{s.heading}\nx").missing == CORE_SECTIONS]
    if missing or bad or any(s.max_tokens < 1 for s in out):
        raise PipesynthError(
            f"guided sampling needs a heading with a positive max_tokens for each core section {CORE_SECTIONS}; "
            f"missing {missing}, unrecognised headings {bad}",
            "see conf/prompt/sections/corpus.yaml (headings: {preprocessing: {text: 'Data preprocessing:', "
            "max_tokens: 96}, ...})",
        )
    return out


def finish_body(text: str, finish_reason: str) -> str:
    """A body cut at its budget ends at its last complete line or sentence, when that keeps most of it."""
    text = text.rstrip()
    if finish_reason != "length":
        return text
    cut = max(text.rfind("\n"), text.rfind(". ") + 1 if ". " in text else -1)
    if text.endswith("."):
        return text
    return text[:cut].rstrip() if cut > len(text) // 2 else text


def section_body(text: str, headings: Sequence[str]) -> str:
    """The body the model wrote after a heading: up to where it began one of the sampler's `headings` itself.

    Lines the section parser would read as headings ("1. Data cleaning: ...", "**Model Evaluation:**") stay in
    the body, indented, so the instruction still parses into exactly the sampler's sections.
    """
    titles = [h.rstrip(": ").strip().lower() for h in headings]
    lines = text.split("\n")
    body = [lines[0].strip()]  # the rest of the heading's own line
    for line in lines[1:]:
        found = _heading(line)
        if found is not None and any(found.title.lower().startswith(t) for t in titles):
            break  # the model started a section the sampler writes itself
        body.append("  " + line.lstrip() if found is not None and found.indent == 0 else line.rstrip())
    while body and not body[0].strip():
        body.pop(0)
    return "\n".join(body).rstrip()
