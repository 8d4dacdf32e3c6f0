"""The `llm` coder: instruction -> code block by block, then one integration prompt (the paper's Figure 7).

Blocks come in the configured order (conf/coder/llm.yaml: data preprocessing -> model architecture -> model
training -> submission); each block's prompt holds the task facts, the whole instruction, the instruction
section the block implements, and the code of every block before it. The integration prompt then joins the
blocks into one script that honours the sandbox contract (reads ./input/, writes ./submission.csv with the
sample submission's columns). Code is taken from the ```python fences of each answer. `repair` sends the failed
script and its traceback (or the grader's reason) and takes the fixed script back.

Prompt placeholders: {task} {instruction} {section} {block} {previous} {contract} (blocks); {task}
{instruction} {blocks} {contract} (integration); {task} {code} {status} {error} {contract} (repair). Literal
braces are written {{ }}.

The blocks, the model's usage and the integration answer are recorded in `CodeResult.plan`
(`{"coder": "llm", "blocks": [...], "llm": {...}}`), so the journal shows every intermediate step.
"""

from __future__ import annotations

import ast
import logging
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from src.errors import PipesynthError
from src.llm import ChatRequest, Completion
from src.pipeline.code.base import CodeResult, ExecutionLike
from src.pipeline.journal import llm_usage

log = logging.getLogger(__name__)

BLOCK_FIELDS = frozenset({"task", "instruction", "section", "block", "previous", "contract"})
INTEGRATION_FIELDS = frozenset({"task", "instruction", "blocks", "contract"})
REPAIR_FIELDS = frozenset({"task", "code", "status", "error", "contract"})
SECTIONS = ("preprocessing", "architecture", "training", "prediction")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The code in a model answer: the longest ```python fence (an unclosed one runs to the end), else the
    longest fence of any language, else the whole answer."""
    fences = [(lang.lower(), body.strip("\n")) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in fences if lang in ("python", "py", "python3")]
    pool = (
        python
        or [body for lang, body in fences if lang in ("", "python", "py", "python3")]
        or [body for _, body in fences]
    )
    if pool:
        return max(pool, key=len).strip() + "\n"
    return text.strip() + "\n"


def _check_fields(template: str, allowed: frozenset[str], what: str) -> None:
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = used - allowed
    if unknown:
        raise PipesynthError(
            f"the llm coder's {what} prompt uses unknown placeholder(s) {sorted(unknown)}",
            f"use only {sorted(allowed)} in conf/coder/llm.yaml (literal braces as {{{{ }}}})",
        )


def task_summary(facts: Mapping[str, Any]) -> str:
    """The public task facts as the prompts show them."""
    lines = [
        f"Competition: {facts.get('title') or facts.get('slug')}",
        f"Data type: {facts.get('data_type')}; task type: {facts.get('task_type')}",
        f"Metric: {facts.get('metric')} ({'higher' if facts.get('higher_is_better') else 'lower'} is better)",
        f"Id column: {facts.get('id_column')}; target column(s): {list(facts.get('targets') or [])}",
        f"Submission columns: {[facts.get('id_column'), *(facts.get('submission_columns') or [])]}",
    ]
    labels = facts.get("class_labels")
    if labels:
        shown = list(labels)[:30]
        lines.append(f"Class labels: {shown}" + (" ..." if len(labels) > 30 else ""))
    for name, info in (facts.get("files") or {}).items():
        columns = list(info.get("columns") or [])
        more = f" ... ({len(columns)} columns)" if len(columns) > 40 else ""
        rows = f", {info['rows']} rows" if info.get("rows") is not None else ""
        lines.append(f"File ./input/{name}{rows}: columns {columns[:40]}{more}")
    return "\n".join(lines)


def failure_text(
    execution: ExecutionLike | Mapping[str, Any] | str, max_chars: int = 3000
) -> tuple[str, str]:
    """(status, error text) of a failed run: the traceback, else the message and the end of stderr; paths
    inside the run's work folder are written relative to it (./solution.py)."""
    if isinstance(execution, str):
        return "error", execution[-max_chars:]
    get = execution.get if isinstance(execution, Mapping) else lambda k, d=None: getattr(execution, k, d)
    status = str(get("status", "error") or "error")
    parts = [str(get("message", "") or "")]
    trace = get("traceback", None)
    if trace:
        parts.append(str(trace))
    else:
        parts.append(str(get("stderr_tail", "") or "")[-max_chars:])
    text = "\n".join(p for p in parts if p.strip())
    workdir = get("workdir", None)
    if workdir:
        # the run folder differs per run: without it the repair prompt (and its cache key) is reproducible
        text = text.replace(f"{workdir}/", "./").replace(str(workdir), ".")
    return status, (text[-max_chars:] if text else status)


class LLMCoder:
    """See the module docstring. `client` is set by the pipeline (its LLM) unless the config names another."""

    def __init__(
        self,
        prompts: Mapping[str, str],
        blocks: Sequence[Mapping[str, str]],
        name: str = "llm",
        client: Any = None,
        temperature: float = 0.2,
        max_tokens: int = 1024,
        integration_max_tokens: int = 2048,
        seed: int = 0,
    ) -> None:
        for key in ("system", "contract", "integration", "repair"):
            if key not in prompts:
                raise PipesynthError(f"coder.prompts lacks '{key}'", "see conf/coder/llm.yaml")
        if not blocks:
            raise PipesynthError("coder.blocks is empty", "list the blocks (name, section, prompt)")
        self.blocks = []
        for block in blocks:
            if not block.get("name") or not block.get("prompt"):
                raise PipesynthError(
                    f"coder block {dict(block)} needs a name and a prompt", "see conf/coder/llm.yaml"
                )
            section = block.get("section")
            if section is not None and section not in SECTIONS:
                raise PipesynthError(f"coder block section {section!r} is unknown", f"use one of {SECTIONS}")
            _check_fields(str(block["prompt"]), BLOCK_FIELDS, f"block '{block['name']}'")
            self.blocks.append(
                {"name": str(block["name"]), "section": section, "prompt": str(block["prompt"])}
            )
        _check_fields(str(prompts["integration"]), INTEGRATION_FIELDS, "integration")
        _check_fields(str(prompts["repair"]), REPAIR_FIELDS, "repair")
        self.prompts = {k: str(v) for k, v in prompts.items()}
        self.name = name
        self.client = client
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.integration_max_tokens = int(integration_max_tokens)
        self.seed = int(seed)

    def _ask(self, content: str, tag: str, max_tokens: int, seed: int) -> Completion:
        if self.client is None:
            raise PipesynthError(
                "the llm coder has no LLM client", "build it through src.pipeline (coder=llm)"
            )
        messages = (
            {"role": "system", "content": self.prompts["system"]},
            {"role": "user", "content": content},
        )
        request = ChatRequest(
            messages=messages, temperature=self.temperature, max_tokens=max_tokens, seed=seed, tag=tag
        )
        return self.client.complete([request])[0]

    def prompt_values(self, instruction_text: str, facts: Mapping[str, Any]) -> dict[str, str]:
        from src.corpus.instruction import parse_instruction

        parsed = parse_instruction(instruction_text)
        values = {
            "task": task_summary(facts),
            "instruction": instruction_text.strip() or "(no instruction: choose a sound standard approach)",
            "contract": self.prompts["contract"].strip(),
        }
        values.update({f"section:{s}": getattr(parsed, s) or "" for s in SECTIONS})
        return values

    def generate(self, instruction_text: str, task_public_facts: dict[str, Any]) -> CodeResult:
        values = self.prompt_values(instruction_text, task_public_facts)
        done: list[dict[str, str]] = []
        completions: list[Completion] = []
        for block in self.blocks:
            section = values.get(f"section:{block['section']}", "") if block["section"] else ""
            previous = "\n\n".join(f"# --- {b['name']} ---\n{b['code']}" for b in done) or "(none yet)"
            prompt = block["prompt"].format_map(
                {
                    "task": values["task"],
                    "instruction": values["instruction"],
                    "section": section.strip() or "(the instruction does not say: choose a sound default)",
                    "block": block["name"],
                    "previous": previous,
                    "contract": values["contract"],
                }
            )
            completion = self._ask(prompt, f"code.{block['name']}", self.max_tokens, self.seed)
            completions.append(completion)
            done.append({"name": block["name"], "code": extract_code(completion.text), "prompt": prompt})
        blocks_text = "\n\n".join(f"# --- {b['name']} ---\n{b['code']}" for b in done)
        prompt = self.prompts["integration"].format_map(
            {
                "task": values["task"],
                "instruction": values["instruction"],
                "blocks": blocks_text,
                "contract": values["contract"],
            }
        )
        final = self._ask(prompt, "code.integration", self.integration_max_tokens, self.seed)
        completions.append(final)
        return self._result(final.text, done, completions, attempt=0, integration_prompt=prompt)

    def _result(
        self,
        answer: str,
        blocks: list[dict[str, str]],
        completions: list[Completion],
        attempt: int,
        **extra: Any,
    ) -> CodeResult:
        code = extract_code(answer)
        notes = []
        try:
            ast.parse(code)
        except SyntaxError as err:
            notes.append(f"the generated script does not parse: line {err.lineno}: {err.msg}")
        plan = {
            "coder": "llm",
            "blocks": [{"name": b["name"], "code": b["code"]} for b in blocks],
            "answer": answer,
            "llm": llm_usage(completions),
            **extra,
        }
        return CodeResult(code=code, plan=plan, notes=notes, attempt=attempt)

    def repair(
        self, previous: CodeResult, execution: ExecutionLike | str, task_public_facts: dict[str, Any]
    ) -> CodeResult | None:
        status, error = failure_text(execution)
        prompt = self.prompts["repair"].format_map(
            {
                "task": task_summary(task_public_facts),
                "code": previous.code,
                "status": status,
                "error": error,
                "contract": self.prompts["contract"].strip(),
            }
        )
        attempt = previous.attempt + 1
        completion = self._ask(
            prompt, f"code.repair{attempt}", self.integration_max_tokens, self.seed + attempt
        )
        result = self._result(completion.text, [], [completion], attempt=attempt, repair_of=status)
        if result.code.strip() == previous.code.strip():
            log.info(
                "%s: the model returned the failed script unchanged: giving up", task_public_facts.get("slug")
            )
            return None
        return result
