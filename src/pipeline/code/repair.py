"""Running a candidate script and the repair loop around it.

A *runner* executes a script in the sandbox and says whether it succeeded:
- `ValidationRunner`: on every fold of a validation split carved from the public train
  (`src.pipeline.validation`), graded by `src.tasks.grading.grade` against the fold's held-out labels; the
  validation score is the mean over folds. A score comes only from this grader.
- `PublicRunner`: on the task's full public files, checked against the public sample submission's shape
  (columns, one row per test id, no empty cells) — no answers are involved.

`run_with_repair` runs a script; a failed run (error, timeout, memory, invalid submission) gets up to
`max_rounds` repairs by the coder (`coder.repair(previous, failure, facts)`: the compiler changes the failing
plan step, the LLM coder sends traceback + code to the model). Every attempt is a journal node (`repair` nodes
are children of the script they fix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.pipeline.code.base import Coder, CodeResult
from src.pipeline.journal import Journal, Node
from src.pipeline.validation import ValidationFold, check_submission_format
from src.tasks.grading import grade

log = logging.getLogger(__name__)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]


@dataclass
class RunOutcome:
    """What one run of a script gave. `failure` is what the coder's repair reads (None when ok)."""

    ok: bool
    status: str  # ok | error | timeout | memory | killed | invalid
    executions: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    failure: Any = None
    split: str = "validation"

    @property
    def score(self) -> float | None:
        """Mean validation score over the folds (None unless every fold was graded valid)."""
        if not self.ok or not self.scores or any(s is None for s in self.scores):
            return None
        return float(statistics.fmean(s for s in self.scores if s is not None))

    @property
    def reason(self) -> str | None:
        return next((r for r in self.reasons if r), None)

    def validation_record(self) -> dict[str, Any]:
        return {"split": self.split, "scores": self.scores, "reasons": self.reasons, "score": self.score}


Runner = Callable[[str, str], RunOutcome]  # (code, node id) -> outcome


def _invalid(execution: Any, reason: str) -> Any:
    """The execution result re-labelled `invalid` with the grader's reason (what a repair must fix)."""
    message = f"the script ran but its submission.csv is invalid: {reason}"
    if dataclasses.is_dataclass(execution) and not isinstance(execution, type):
        return dataclasses.replace(execution, status="invalid", message=message)
    return {"status": "invalid", "message": message, "reason": reason, "traceback": None}


MIN_RUN_S = 5.0  # a run is never given less: under that nothing but an import finishes


def _run(sandbox: Any, script: Path, inputs: Path, work: Path, deadline: float | None) -> Any:
    """One sandbox run; past `deadline` (a time.perf_counter() instant) the sandbox kills it as a timeout."""
    if deadline is None:
        return sandbox.run(script, inputs, work)
    left = max(MIN_RUN_S, deadline - time.perf_counter())
    return sandbox.run(script, inputs, work, timeout_s=min(left, float(getattr(sandbox, "timeout_s", left))))


def _write_script(code: str, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    script = where / "solution.py"
    script.write_text(code, encoding="utf-8")
    return script


class ValidationRunner:
    """Run a script on each validation fold and grade it against the fold's held-out labels."""

    def __init__(
        self, sandbox: Any, folds: Sequence[ValidationFold], work_dir: str | Path, keep_work: bool = False
    ):
        self.sandbox = sandbox
        self.folds = list(folds)
        self.work_dir = Path(work_dir)
        self.keep_work = keep_work
        self.deadline: float | None = None  # runs still going then are killed (the search's hard stop)

    def __call__(self, code: str, node_id: str) -> RunOutcome:
        outcome = RunOutcome(
            ok=True, status="ok", split=f"validation-{self.folds[0].scheme}x{len(self.folds)}"
        )
        for fold in self.folds:
            where = self.work_dir / node_id / f"fold{fold.index}"
            script = _write_script(code, where)
            result = _run(self.sandbox, script, fold.public_dir, where / "work", self.deadline)
            outcome.executions.append({"fold": fold.index, **result.to_dict()})
            if result.status != "ok":
                outcome.ok, outcome.status = False, result.status
                outcome.scores.append(None)
                outcome.reasons.append(result.message or result.status)
                outcome.failure = result
                break  # the same script fails the same way on the next fold: repair first
            graded = grade(fold.prepared, Path(result.workdir) / "submission.csv")
            outcome.scores.append(graded.score)
            outcome.reasons.append(graded.reason)
            if not self.keep_work:
                shutil.rmtree(Path(result.workdir) / "input", ignore_errors=True)  # a copy of the fold
            if not graded.valid:
                outcome.ok, outcome.status = False, "invalid"
                outcome.failure = _invalid(result, graded.reason or "invalid submission")
                break
        return outcome


class PublicRunner:
    """Run a script on the full public files; success = it exits cleanly with a well-shaped submission."""

    def __init__(self, sandbox: Any, public_dir: str | Path, work_dir: str | Path):
        self.sandbox = sandbox
        self.public_dir = Path(public_dir)
        self.work_dir = Path(work_dir)
        self.inputs_dir = self.public_dir  # what a run gets as input/ (a subclass may add derived files)
        self.deadline: float | None = None  # runs still going then are killed (the search's hard stop)

    def __call__(self, code: str, node_id: str) -> RunOutcome:
        where = self.work_dir / node_id
        script = _write_script(code, where)
        result = _run(self.sandbox, script, self.inputs_dir, where / "work", self.deadline)
        outcome = RunOutcome(ok=result.status == "ok", status=result.status, split="public")
        outcome.executions.append(result.to_dict())
        if result.status != "ok":
            outcome.reasons.append(result.message or result.status)
            outcome.failure = result
            return outcome
        reason = check_submission_format(
            Path(result.workdir) / "submission.csv", self.public_dir / "sample_submission.csv"
        )
        outcome.reasons.append(reason)
        shutil.rmtree(Path(result.workdir) / "input", ignore_errors=True)
        if reason is not None:
            outcome.ok, outcome.status = False, "invalid"
            outcome.failure = _invalid(result, reason)
        return outcome


def code_llm_usage(result: CodeResult) -> dict[str, Any] | None:
    """LLM usage an LLM coder recorded in its plan (None for the compiler)."""
    plan = result.plan or {}
    return plan.get("llm") if plan.get("coder") == "llm" else None


def record_code(node: Node, result: CodeResult) -> None:
    """Copy a script and what its coder noted onto a journal node."""
    node.code = result.code
    node.plan = result.plan
    node.substitutions = list(result.substitutions)
    node.notes.extend(result.notes)
    node.attempt = result.attempt
    node.llm = code_llm_usage(result)
    node.meta["code_sha"] = code_hash(result.code)


def _finish(node: Node, outcome: RunOutcome) -> None:
    node.finish(
        outcome.status,
        execution=outcome.executions if len(outcome.executions) != 1 else outcome.executions[0],
        validation=outcome.validation_record(),
        validation_score=outcome.score,
    )


@dataclass
class Attempted:
    """The last node of a repair chain, its script and how its last run went."""

    node: Node
    code: CodeResult
    outcome: RunOutcome


class RunCache:
    """Outcomes by script hash, so an identical script (k instructions -> the same compiled plan) runs once."""

    def __init__(self) -> None:
        self._by_hash: dict[str, tuple[str, RunOutcome]] = {}
        self._lock = threading.Lock()

    def get(self, code: str) -> tuple[str, RunOutcome] | None:
        with self._lock:
            return self._by_hash.get(code_hash(code))

    def put(self, code: str, node_id: str, outcome: RunOutcome) -> None:
        with self._lock:
            self._by_hash.setdefault(code_hash(code), (node_id, outcome))


def run_with_repair(
    coder: Coder,
    code: CodeResult,
    facts: dict[str, Any],
    run: Runner,
    journal: Journal,
    parent: Node | str | None,
    max_rounds: int,
    stage: str = "code",
    cache: RunCache | None = None,
) -> Attempted:
    """Run `code` (a new `stage` node under `parent`); repair failed runs up to `max_rounds` times."""
    node = journal.add(stage, parent=parent)
    record_code(node, code)
    seen = cache.get(code.code) if cache is not None else None
    if seen is not None:
        # the same script already ran: reuse its outcome (and its repair chain's end, via the caller)
        same_as, outcome = seen
        node.meta["same_as"] = same_as
        node.finish("duplicate", validation=outcome.validation_record(), validation_score=outcome.score)
        return Attempted(node, code, outcome)
    outcome = run(code.code, node.id)
    _finish(node, outcome)
    if cache is not None:
        cache.put(code.code, node.id, outcome)
    rounds = 0
    while not outcome.ok and rounds < max_rounds:
        fixed = coder.repair(code, outcome.failure, facts)
        if fixed is None:
            node.notes.append(f"{coder.name}: nothing left to repair after {rounds} round(s)")
            break
        rounds += 1
        log.info(
            "%s: repair round %d after %s (%s)", facts.get("slug"), rounds, outcome.status, outcome.reason
        )
        code = fixed
        node = journal.add("repair", parent=node)
        record_code(node, code)
        node.meta["repair_round"] = rounds
        outcome = run(code.code, node.id)
        _finish(node, outcome)
        if cache is not None:
            cache.put(code.code, node.id, outcome)
    return Attempted(node, code, outcome)
