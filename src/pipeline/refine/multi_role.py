"""The paper's multi-role (Smart-GPT) refinement: a researcher lists the options' flaws, a resolver picks one and rewrites it (prompts: conf/refine/multi_role.yaml).

guided (auto: where the client continues answer prefixes, i.e. local models and servers): the resolver's answer is well formed by construction, whatever the model: its choice is
decoded right after the fixed words "Option " (a number 1..k, else the researcher's, else option 1, and the
record says which), then the sampler writes each section heading and the model only its body (as guided
instruction sampling does). A model that still writes nothing for a section gets that section of the chosen
option. free: the paper's one free-text answer, parsed; an answer without its sections falls back to the chosen
option as written (status `fallback`, counted in the record and the suite summary).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from src.corpus.instruction import parse_instruction
from src.errors import PipesynthError
from src.llm import ChatRequest
from src.pipeline.instruct import cut_words, sections_of, well_formed
from src.pipeline.instruct.sampling import finish_body, guided_sections, section_body
from src.pipeline.journal import llm_usage
from src.pipeline.refine.base import RefineContext, Refined

log = logging.getLogger(__name__)


DEFAULT_SECTIONS = {
    "headings": {
        "preprocessing": {"text": "Data preprocessing:", "max_tokens": 96},
        "architecture": {"text": "Model architecture:", "max_tokens": 64},
        "training": {"text": "Model training:", "max_tokens": 80},
    }
}
PICK_PREFIX = "The best answer is Option "
REWRITE_PREFIX = "Option {number} is the best. The improved instruction:\n\n"
_OPTION_RE = re.compile(r"\boption\s*#?\s*(\d+)", re.IGNORECASE)


def continues_prefixes(client: Any) -> bool:
    """Whether the client continues an answer prefix in a chat (local models and servers do; api.openai.com
    does not: its client has prefix_mode=error)."""
    return getattr(client, "prefix_mode", "continue") != "error"


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
        guided: bool | str = "auto",
        sections: dict[str, Any] | None = None,
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
        if guided not in (True, False, "auto"):
            raise PipesynthError(f"refine.guided={guided!r}", "use true, false or auto")
        self.guided = guided
        self.sections = guided_sections(sections or DEFAULT_SECTIONS) if guided else []

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
        if self.guided is True or (self.guided == "auto" and continues_prefixes(client)):
            return self._guided(ctx, client, node, researcher, resolver_messages, params)
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

    def _guided(
        self,
        ctx: RefineContext,
        client: Any,
        node: Any,
        researcher: Any,
        messages: list[dict[str, str]],
        params: dict[str, Any],
    ) -> Refined:
        """The resolver's choice decoded after "Option ", then its rewrite section by section (headings ours)."""
        k = len(ctx.candidates)
        [choice] = client.complete(
            [
                ChatRequest(
                    messages=tuple(messages),
                    tag="refine.resolver.pick",
                    prefix=PICK_PREFIX,
                    **{**params, "max_tokens": 3},
                )
            ]
        )
        digits = re.match(r"\s*#?\s*(\d+)", choice.text)
        picked = int(digits.group(1)) if digits and 1 <= int(digits.group(1)) <= k else None
        picked_by = "resolver"
        if picked is None:
            picked, picked_by = mentioned_option(researcher.text, k), "researcher"
        if picked is None:
            picked, picked_by = 1, "default (no option number decoded)"
        chosen = ctx.candidates[picked - 1]
        node.parent = chosen.node_id
        option_sections = parse_instruction(chosen.text)
        headings = [section.heading for section in self.sections]
        stop = tuple(f"\n{h}" for h in headings)
        lead = REWRITE_PREFIX.format(number=picked)
        written, used, borrowed = "", [researcher, choice], []
        for section in self.sections:
            head = (written + "\n\n" if written else "") + section.heading
            request = ChatRequest(
                messages=tuple(messages),
                tag=f"refine.resolver.{section.key}",
                prefix=lead + head,
                stop=stop,
                **{**params, "max_tokens": section.max_tokens},
            )
            [completion] = client.complete([request])
            used.append(completion)
            body = section_body(finish_body(completion.text, completion.finish_reason), headings)
            if not body:  # ended its turn after the heading: one more try with the first bullet begun
                [again] = client.complete([replace(request, prefix=f"{request.prefix}\n-")])
                used.append(again)
                rest = section_body(finish_body(again.text, again.finish_reason), headings)
                body = f"- {rest}" if rest else ""
            if not body:  # nothing from the model: the chosen option's own section, and the record says so
                body = (
                    option_sections.sections.get(section.key) or ""
                ).strip() or "(as in the chosen option)"
                borrowed.append(section.key)
            joiner = "\n" if body.startswith("-") else " "
            written = head + joiner + body
        parsed = parse_instruction(written)
        node.meta.update(
            researcher=researcher.text, resolver=written, picked_option=picked, picked_by=picked_by,
            borrowed_sections=borrowed,
        )  # fmt: skip
        node.llm = llm_usage(used)
        notes = [f"resolver: option {picked} ({picked_by})"]
        if borrowed:
            notes.append(f"resolver wrote nothing for {borrowed}: those sections are option {picked}'s")
        node.notes.extend(notes)
        text = parsed.render() if well_formed(parsed) else written
        node.finish("ok", instruction=text, sections=sections_of(parsed), rank=picked)
        return Refined(text=text, node_id=node.id, rank=picked, notes=notes)
