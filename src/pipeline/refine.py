"""Refinement: from k ranked instructions to the one the code is made from (`conf/refine/`, the paper's ablation).

- `NoRefine` (`refine=none`): the raw fine-tuned model's rank-1 instruction.
- `MultiRoleRefine` (`refine=multi_role`): the paper's Smart-GPT (Section 4.2, Figure 6). A researcher role
  lists the flaws and faulty logic of the k options; a resolver role, seeing the researcher's answer, picks the
  best option and rewrites it in full. Prompts are data (conf/refine/multi_role.yaml). A resolver answer without
  the core sections falls back to the option it named (else rank 1), marked in the journal.
- `ExecutionRefine` (`refine=execution`, beyond the paper, which found Smart-GPT inconsistent): every option
  becomes a script (the configured coder), runs in the sandbox on a validation split carved from the PUBLIC
  train (`src.pipeline.validation`), failed runs are repaired, and the best validation score under the metric's
  direction wins (ties: the better rank). Private answers are never touched.

Each refiner's `refine(ctx)` returns a `Refined`: the chosen instruction text and journal node, and for
execution refinement the already validated script.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.corpus.instruction import parse_instruction
from src.errors import PipesynthError
from src.llm import ChatRequest
from src.pipeline.coder_base import Coder, CodeResult
from src.pipeline.instruct import Candidate, cut_words, sections_of, well_formed
from src.pipeline.journal import Journal, llm_usage
from src.pipeline.repair import Attempted, RunCache, ValidationRunner, run_with_repair
from src.pipeline.validation import build_validation_split

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


_OPTION_RE = re.compile(r"\boption\s*#?\s*(\d+)", re.IGNORECASE)


def mentioned_option(text: str, k: int) -> int | None:
    """The first option number in 1..k a text names ("Option 2 is the best" -> 2), or None."""
    for match in _OPTION_RE.finditer(text):
        value = int(match.group(1))
        if 1 <= value <= k:
            return value
    return None


def _fill(template: str, values: dict[str, Any], what: str) -> str:
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as err:
        raise PipesynthError(
            f"the {what} prompt has a placeholder that cannot be filled ({err})",
            f"use only {{{', '.join(sorted(values))}}} in conf/refine/*.yaml (literal braces as {{{{ }}}})",
        ) from None


class MultiRoleRefine:
    """Researcher -> resolver (Smart-GPT). Prompts: `system`, `question`, `option`, `researcher`, `resolver`.

    Placeholders: {task} (title, data type, metric), {description}, {k}, {options} (the k options, each rendered
    with `option`: {number}, {text}). The resolver's turn follows the researcher's in one conversation.
    """

    name = "multi_role"

    def __init__(
        self,
        prompts: dict[str, str],
        name: str = "multi_role",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        max_description_chars: int = 3000,
        client: Any = None,
    ) -> None:
        required = ("question", "option", "researcher", "resolver")
        missing = [key for key in required if not prompts.get(key)]
        if missing:
            raise PipesynthError(f"refine.prompts lacks {missing}", "see conf/refine/multi_role.yaml")
        self.name = name
        self.prompts = dict(prompts)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.max_description_chars = int(max_description_chars)
        self.client = client  # None: the pipeline's LLM; set when refine.client names another model

    def messages(self, ctx: RefineContext) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The researcher's conversation and the values the prompts were filled with."""
        facts = ctx.facts
        options = "\n\n".join(
            _fill(self.prompts["option"], {"number": i, "text": c.text.strip()}, "option")
            for i, c in enumerate(ctx.candidates, start=1)
        )
        values = {
            "task": f"{facts.get('title', facts.get('slug'))} ({facts['data_type']} data, {facts['task_type']}, "
            f"metric {facts['metric']}, {'higher' if facts.get('higher_is_better') else 'lower'} is better)",
            "description": cut_words(" ".join(ctx.description.split()), self.max_description_chars),
            "k": len(ctx.candidates),
            "options": options,
        }
        messages = (
            [{"role": "system", "content": self.prompts["system"]}] if self.prompts.get("system") else []
        )
        question = _fill(self.prompts["question"], values, "question")
        messages.append(
            {
                "role": "user",
                "content": question + "\n\n" + _fill(self.prompts["researcher"], values, "researcher"),
            }
        )
        return messages, values

    def refine(self, ctx: RefineContext) -> Refined:
        client = self.client or ctx.client
        if client is None:
            raise PipesynthError("multi_role refinement needs an LLM", "set llm=<local|openai|scripted>")
        k = len(ctx.candidates)
        node = ctx.journal.add("refine", parent=ctx.candidates[0].node_id)
        messages, values = self.messages(ctx)
        params = {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": ctx.seed}
        [researcher] = client.complete(
            [ChatRequest(messages=tuple(messages), tag="refine.researcher", **params)]
        )
        resolver_messages = [
            *messages,
            {"role": "assistant", "content": researcher.text},
            {"role": "user", "content": _fill(self.prompts["resolver"], values, "resolver")},
        ]
        [resolver] = client.complete(
            [ChatRequest(messages=tuple(resolver_messages), tag="refine.resolver", **params)]
        )
        picked = mentioned_option(resolver.text, k) or mentioned_option(researcher.text, k)
        parsed = parse_instruction(resolver.text)
        node.meta.update(researcher=researcher.text, resolver=resolver.text, picked_option=picked)
        node.llm = llm_usage([researcher, resolver])
        if picked is not None:
            node.parent = ctx.candidates[picked - 1].node_id
        if well_formed(parsed):
            # the canonical rendering drops the resolver's preamble ("Option 2 is best because ...")
            text = parsed.render()
            node.finish("ok", instruction=text, sections=sections_of(parsed), rank=picked)
            return Refined(text=text, node_id=node.id, rank=picked)
        fallback = ctx.candidates[(picked or 1) - 1]
        note = f"the resolver's answer lacks {', '.join(parsed.missing)}: using option {fallback.rank} as written"
        log.warning("%s: %s", ctx.facts.get("slug"), note)
        node.notes.append(note)
        node.finish("fallback", instruction=fallback.text, sections=fallback.sections, rank=fallback.rank)
        return Refined(text=fallback.text, node_id=node.id, rank=fallback.rank, notes=[note])


class ExecutionRefine:
    """Every option -> script -> sandbox on a public validation split -> grader; the best score wins.

    validation: {scheme: auto|holdout|kfold|time, folds, fraction, seed, max_rows} (src.pipeline.validation).
    workers: candidates run in parallel (threads; each run is its own sandboxed process).
    """

    name = "execution"

    def __init__(
        self,
        name: str = "execution",
        validation: dict[str, Any] | None = None,
        workers: int = 1,
        keep_work: bool = False,
    ) -> None:
        self.name = name
        self.validation = {"scheme": "auto", "folds": 1, "fraction": 0.2, "seed": 0, "max_rows": None}
        self.validation.update(dict(validation or {}))
        self.workers = max(1, int(workers))
        self.keep_work = keep_work

    def refine(self, ctx: RefineContext) -> Refined:
        if ctx.coder is None or ctx.sandbox is None:
            raise PipesynthError(
                "execution refinement needs a coder and a sandbox", "set coder= and sandbox="
            )
        folds = build_validation_split(ctx.public_dir, ctx.work_dir / "validation", **self.validation)
        runner = ValidationRunner(ctx.sandbox, folds, ctx.work_dir / "candidates", keep_work=self.keep_work)
        ctx.journal.meta["validation"] = {
            **self.validation,
            "scheme": folds[0].scheme,
            "n_train": [f.n_train for f in folds],
            "n_test": [f.n_test for f in folds],
        }
        cache = RunCache()
        coder = ctx.coder

        def attempt(candidate: Candidate) -> Attempted:
            code = coder.generate(candidate.text, ctx.facts)
            return run_with_repair(
                coder, code, ctx.facts, runner, ctx.journal, candidate.node_id, ctx.repair_rounds, cache=cache
            )

        if self.workers > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                results = list(pool.map(attempt, ctx.candidates))
        else:
            results = [attempt(c) for c in ctx.candidates]

        best: tuple[Candidate, Attempted] | None = None
        for candidate, done in zip(ctx.candidates, results, strict=True):
            score = done.outcome.score
            if done.node.status != "ok" or score is None:
                continue
            if best is None or ctx.journal.better(score, best[1].outcome.score):  # type: ignore[arg-type]
                best = (candidate, done)
        if best is None:
            first, done = ctx.candidates[0], results[0]
            note = "no option gave a valid submission on the validation split: keeping rank 1's last script"
            log.warning("%s: %s", ctx.facts.get("slug"), note)
            return Refined(
                text=first.text,
                node_id=first.node_id,
                rank=first.rank,
                code=done.code,
                code_node_id=done.node.id,
                notes=[note],
            )
        candidate, done = best
        log.info(
            "%s: option %d wins with validation %s=%.5g",
            ctx.facts.get("slug"),
            candidate.rank,
            ctx.journal.metric,
            done.outcome.score,
        )
        return Refined(
            text=candidate.text,
            node_id=candidate.node_id,
            rank=candidate.rank,
            code=done.code,
            code_node_id=done.node.id,
            validated=True,
            validation_score=done.outcome.score,
        )
