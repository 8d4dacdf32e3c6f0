"""The RefineContext a search test runs in: a public task folder's facts, a fresh journal, a coder, a sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.pipeline.journal import Journal
from src.pipeline.refine import RefineContext


def search_context(public: Path, work: Path, sandbox: Any, coder: Any, client: Any = None) -> RefineContext:
    """A context over `public` (its task.json gives the facts and the journal's metric)."""
    facts = json.loads((public / "task.json").read_text())
    journal = Journal(facts["slug"], facts["metric"], facts["higher_is_better"])
    return RefineContext(
        facts=facts,
        description="",
        candidates=[],
        journal=journal,
        public_dir=public,
        work_dir=work,
        client=client,
        coder=coder,
        sandbox=sandbox,
        repair_rounds=1,
    )
