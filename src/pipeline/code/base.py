"""The interface every coder (`conf/coder/*.yaml`) implements: instruction + public task facts -> one script.

A coder turns an instruction into a solution script honouring the sandbox contract (reads ./input/, writes
./submission.csv, prints `cv_score=<float>` — its validation score on the public train split, used only to rank
candidates during execution-guided refinement, never as the graded score), and repairs a script that failed.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

CV_SCORE_RE = re.compile(r"^cv_score=(\S+)\s*$", re.MULTILINE)


@dataclass
class CodeResult:
    """One generated script and what the coder wants recorded with it in the journal.

    plan: the coder's structured intermediate form (the compiler's Plan as a dict; None for an LLM coder).
    substitutions: requests that could not run offline and what replaced them ({requested, replacement, reason}).
    attempt: 0 for the first script, n for the n-th repair.
    """

    code: str
    plan: dict[str, Any] | None = None
    substitutions: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExecutionLike(Protocol):
    """What a coder reads from a failed run (src.sandbox.ExecutionResult has these fields)."""

    status: str
    traceback: str | None
    stdout_tail: str
    stderr_tail: str


@runtime_checkable
class Coder(Protocol):
    name: str

    def generate(self, instruction_text: str, task_public_facts: dict[str, Any]) -> CodeResult:
        """A script for the instruction (sections may be garbage: the result must still be a sound script)."""
        ...

    def repair(
        self, previous: CodeResult, execution: ExecutionLike | str, task_public_facts: dict[str, Any]
    ) -> CodeResult | None:
        """A fixed script after a failed run (error, timeout, invalid submission), or None to give up."""
        ...


def parse_cv_score(stdout: str) -> float | None:
    """The last `cv_score=<float>` line a script printed (None when absent or not a finite number)."""
    matches = CV_SCORE_RE.findall(stdout or "")
    if not matches:
        return None
    try:
        value = float(matches[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) else None
