"""What every refiner takes and returns (`RefineContext`, `Refined`), and `NoRefine`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.pipeline.code.base import Coder, CodeResult
from src.pipeline.instruct import Candidate
from src.pipeline.journal import Journal

log = logging.getLogger(__name__)


@dataclass
class RefineContext:
    """Everything a refiner may use. `client` is the pipeline's LLM; `coder`/`sandbox` run candidates."""

    facts: dict[str, Any]
    description: str
    candidates: list[Candidate]
    journal: Journal
    public_dir: Path
    work_dir: Path
    client: Any = None
    coder: Coder | None = None
    sandbox: Any = None
    repair_rounds: int = 2
    seed: int = 0


@dataclass
class Refined:
    """The refiner's choice. `code`/`code_node_id` are set when the script was already run and validated."""

    text: str
    node_id: str
    rank: int | None = None
    code: CodeResult | None = None
    code_node_id: str | None = None
    validated: bool = False
    validation_score: float | None = None
    notes: list[str] = field(default_factory=list)


class NoRefine:
    """The rank-1 instruction as the model wrote it."""

    name = "none"

    def __init__(self, name: str = "none") -> None:
        self.name = name

    def refine(self, ctx: RefineContext) -> Refined:
        first = ctx.candidates[0]
        return Refined(text=first.text, node_id=first.node_id, rank=first.rank)
