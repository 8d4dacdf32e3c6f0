"""`CompilerCoder`: the offline, deterministic coder (conf/coder/compiler.yaml)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from src.pipeline.code.base import CodeResult, ExecutionLike
from src.pipeline.code.compiler.parse import parse_plan
from src.pipeline.code.compiler.plan import Plan, finalize
from src.pipeline.code.compiler.plan_repair import repair_plan
from src.pipeline.code.compiler.render import render_script


class CompilerCoder:
    """Instruction -> Plan (parse_plan) -> script (render_script); repair changes the plan step that failed.

    time_budget_s: CPU seconds of cross-validation a script allows itself (it adds no fold after that);
    seed: the scripts' random seed.
    """

    def __init__(self, name: str = "compiler", time_budget_s: float = 35.0, seed: int = 0) -> None:
        self.name = name
        self.time_budget_s = float(time_budget_s)
        self.seed = int(seed)

    def _result(self, plan: Plan, facts: dict[str, Any], attempt: int) -> CodeResult:
        return CodeResult(
            code=render_script(plan, facts),
            plan=plan.to_dict(),
            substitutions=[asdict(s) for s in plan.substitutions],
            notes=list(plan.notes),
            attempt=attempt,
        )

    def plan(self, instruction_text: str, task_public_facts: dict[str, Any]) -> Plan:
        """The plan for an instruction, with this coder's cross-validation budget."""
        plan = parse_plan(instruction_text, task_public_facts, seed=self.seed)
        plan.validation.time_budget_s = self.time_budget_s
        return finalize(plan, task_public_facts)

    def from_plan(self, plan: Plan, task_public_facts: dict[str, Any], attempt: int = 0) -> CodeResult:
        """The script of an edited plan (the search's moves), finalized for the task."""
        return self._result(finalize(plan, task_public_facts), task_public_facts, attempt=attempt)

    def generate(self, instruction_text: str, task_public_facts: dict[str, Any]) -> CodeResult:
        return self._result(self.plan(instruction_text, task_public_facts), task_public_facts, attempt=0)

    def repair(
        self, previous: CodeResult, execution: ExecutionLike | str, task_public_facts: dict[str, Any]
    ) -> CodeResult | None:
        if previous.plan is None:
            return None  # not a compiled script: nothing structured to change
        plan = repair_plan(Plan.from_dict(previous.plan), execution, task_public_facts)
        if plan is None:
            return None
        return self._result(plan, task_public_facts, attempt=previous.attempt + 1)
