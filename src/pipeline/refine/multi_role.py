"""The paper's multi-role (Smart-GPT) refinement: a researcher lists the options' flaws, a resolver picks one and rewrites it (prompts: conf/refine/multi_role.yaml)."""

from __future__ import annotations

import logging
import re
from typing import Any

from src.corpus.instruction import parse_instruction
from src.errors import PipesynthError
from src.llm import ChatRequest
from src.pipeline.instruct import cut_words, sections_of, well_formed
from src.pipeline.journal import llm_usage
from src.pipeline.refine.base import RefineContext, Refined

log = logging.getLogger(__name__)


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
