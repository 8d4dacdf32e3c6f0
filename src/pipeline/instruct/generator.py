"""The instruction generator: k ranked instructions for one task (see the package docstring)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from src.corpus.instruction import Instruction, parse_instruction
from src.corpus.metric_categories import MetricCategories
from src.corpus.prompts import PromptTemplate
from src.errors import PipesynthError
from src.llm import ChatRequest, Completion
from src.pipeline.instruct.retrieve import (
    ContextFormat,
    Guidance,
    Retriever,
    render_with_context,
    sends_messages,
)
from src.pipeline.instruct.sampling import (
    DECIDE_MODES,
    RETRIEVAL_MODES,
    SAMPLING_MODES,
    finish_body,
    guided_sections,
    section_body,
)
from src.pipeline.instruct.text import (
    Candidate,
    cut_words,
    plain_description,
    sections_of,
    task_prompt_fields,
    well_formed,
)
from src.pipeline.journal import Journal, Node, llm_usage

log = logging.getLogger(__name__)

RESAMPLE_SEED_STRIDE = (
    1000  # attempt a of rank r samples with seed + a * stride (a distinct, cacheable request)
)


def inner_client(client: Any) -> Any:
    """The model client inside wrappers (SerialClient, CachedClient), or the client itself."""
    seen = 0
    while getattr(client, "client", None) is not None and seen < 5:
        client, seen = client.client, seen + 1
    return client


def tokenizer_of(client: Any) -> Any:
    """The client's tokenizer when it runs a local model (loaded without the weights), else None."""
    inner = inner_client(client)
    tok = getattr(inner, "tokenizer", None)
    if tok is not None:
        return tok
    model_cfg = getattr(inner, "model_cfg", None)
    if model_cfg is None:
        return None
    from src.training.base_models import load_tokenizer

    return load_tokenizer(model_cfg, getattr(inner, "cache_dir", ".cache"))


class InstructionGenerator:
    """Top-k ranked instructions for a task (see the module docstring). Built from the generate config."""

    def __init__(
        self,
        template: PromptTemplate,
        categories: MetricCategories,
        k: int = 3,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        max_resample: int = 2,
        resample_budget_s: float | None = None,
        max_prompt_tokens: int | None = None,
        max_description_chars: int | None = 4000,
        min_chars: int = 40,
        seed: int = 0,
        sampling: str = "free",
        sections: Mapping[str, Any] | None = None,
        retrieval: str = "none",
        decide: str = "model",
        retriever: Retriever | None = None,
        context_format: ContextFormat | None = None,
    ) -> None:
        if k < 1:
            raise PipesynthError(
                f"k={k}: at least one instruction is needed", "set k=3 (the paper's setting)"
            )
        for name, value, allowed in (
            ("sampling", sampling, SAMPLING_MODES),
            ("retrieval.mode", retrieval, RETRIEVAL_MODES),
            ("decide.mode", decide, DECIDE_MODES),
        ):
            if value not in allowed:
                raise PipesynthError(f"unknown {name} {value!r}", f"use one of {', '.join(allowed)}")
        if decide == "vote" and sampling != "guided":
            raise PipesynthError(
                "decide=vote writes the voted family into the Model architecture section, which needs "
                "sampling=guided",
                "set sampling=guided (or decide=model)",
            )
        if (retrieval != "none" or decide == "vote") and retriever is None:
            raise PipesynthError(
                f"retrieval={retrieval} / decide={decide} need the corpus index, and none was built",
                "set paths.corpus_path to the corpus CSV, or retrieval=none decide=model",
            )
        self.template = template
        self.categories = categories
        self.k = int(k)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.max_resample = max(0, int(max_resample))
        self.resample_budget_s = float(resample_budget_s) if resample_budget_s else None
        self.max_prompt_tokens = max_prompt_tokens
        self.max_description_chars = max_description_chars
        self.min_chars = int(min_chars)
        self.seed = int(seed)
        self.sampling = sampling
        self.sections_cfg = dict(sections or {})
        self.sections = guided_sections(sections) if sampling == "guided" else []
        self.retrieval = retrieval
        self.decide = decide
        self.retriever = retriever
        self.context_format = context_format or ContextFormat()
        # the text the training completion puts before the instruction (figure4: one space)
        self.lead = template.completion.split("{instruction}", 1)[0]

    def settings(self) -> dict[str, Any]:
        """The instruction stage's choices, as journaled."""
        out: dict[str, Any] = {
            "sampling": self.sampling,
            "retrieval": self.retrieval,
            "decide": self.decide,
            "k": self.k,
            "temperature": self.temperature,
            "prompt": self.template.name,
        }
        if self.sections:
            out["sections"] = {
                s.key: {"heading": s.heading, "max_tokens": s.max_tokens} for s in self.sections
            }
        return out

    def prompts(
        self, facts: dict[str, Any], description: str, tokenizer: Any = None, context: str = ""
    ) -> list[str]:
        """The k prompts (rank 1..k), the description fitted to the budget, `context` before each request."""
        data_type, category = task_prompt_fields(facts, self.categories)
        description = plain_description(description)
        prompts = []
        for rank in range(1, self.k + 1):
            desc = description
            if tokenizer is not None and self.max_prompt_tokens:
                desc = self.template.fit_description(
                    tokenizer, int(self.max_prompt_tokens), description, data_type, category, rank
                )
            elif self.max_description_chars:
                desc = cut_words(description, int(self.max_description_chars))
            prompts.append(render_with_context(self.template, context, desc, data_type, category, rank))
        return prompts

    def _request(self, prompt: str, rank: int, attempt: int, seed: int, **extra: Any) -> ChatRequest:
        tag = extra.pop("tag", "")
        text: dict[str, Any] = (
            {"messages": tuple(self.template._messages(prompt))}  # type: ignore[attr-defined]
            if sends_messages(self.template)
            else {"prompt": prompt}
        )
        return ChatRequest(
            **text,
            temperature=self.temperature,
            max_tokens=extra.pop("max_tokens", self.max_tokens),
            seed=seed + attempt * RESAMPLE_SEED_STRIDE,
            tag=f"instruct.rank{rank}" + (f".resample{attempt}" if attempt else "") + tag,
            **extra,
        )

    def _stops(self, guidance: Guidance) -> tuple[str, ...]:
        stops = list(self.sections_cfg.get("stop") or ())
        if guidance.examples:
            stops += list(self.context_format.stop)
        return tuple(dict.fromkeys(s for s in stops if s))

    def _free_round(
        self, client: Any, prompts: list[str], ranks: list[int], attempt: int, seed: int, guidance: Guidance
    ) -> list[tuple[str, str, list[Completion], int]]:
        stop = self._stops(guidance) or None
        requests = [self._request(prompts[r - 1], r, attempt, seed, stop=stop) for r in ranks]
        completions: list[Completion] = client.complete(requests)
        return [
            (c.text.strip(), c.finish_reason, [c], req.seed or 0)
            for req, c in zip(requests, completions, strict=True)
        ]

    def _guided_round(
        self, client: Any, prompts: list[str], ranks: list[int], attempt: int, seed: int, guidance: Guidance
    ) -> list[tuple[str, str, list[Completion], int]]:
        """Every pending rank section by section: the sampler writes the heading, the model the body; one
        batched call per section for all ranks."""
        written = {r: "" for r in ranks}
        used: dict[int, list[Completion]] = {r: [] for r in ranks}
        finish = {r: "stop" for r in ranks}
        other = [s.heading for s in self.sections]
        stops = self._stops(guidance)
        for section in self.sections:
            given = ""
            if section.key == "architecture" and guidance.phrase:
                settings = ", ".join(f"{k}={v}" for k, v in guidance.settings.items())
                given = f" {guidance.phrase}" + (f" ({settings})" if settings else "")
            heads = {r: (written[r] + "\n\n" if written[r] else "") + section.heading + given for r in ranks}
            # stop where the model starts any section heading itself (the sampler writes them)
            stop = tuple(dict.fromkeys([*(f"\n{h}" for h in other), *stops]))
            requests = [
                self._request(
                    prompts[r - 1],
                    r,
                    attempt,
                    seed,
                    prefix=self.lead + heads[r],
                    max_tokens=section.max_tokens,
                    stop=stop,
                    tag=f".{section.key}",
                )
                for r in ranks
            ]
            completions: list[Completion] = client.complete(requests)
            texts = {
                r: given + finish_body(c.text, c.finish_reason)
                for r, c in zip(ranks, completions, strict=True)
            }
            # a model that ends its turn right after a heading (it thinks it said it all) gets the section's
            # first bullet written for it, once, in one more batch
            empty = [i for i, r in enumerate(ranks) if not section_body(texts[r], other)]
            if empty:
                again = [replace(requests[i], prefix=requests[i].prefix + "\n-") for i in empty]
                for i, c in zip(empty, client.complete(again), strict=True):
                    used[ranks[i]].append(c)
                    texts[ranks[i]] = given + "\n-" + finish_body(c.text, c.finish_reason)
            for r, c in zip(ranks, completions, strict=True):
                text = texts[r]
                body = section_body(text, other)
                joiner = " " if text.split("\n", 1)[0].strip() else "\n"
                written[r] = (written[r] + "\n\n" if written[r] else "") + section.heading
                written[r] += (joiner + body) if body else ""
                used[r].append(c)
                if c.finish_reason == "length":
                    finish[r] = "length"
        return [
            (written[r].strip(), finish[r], used[r], seed + attempt * RESAMPLE_SEED_STRIDE) for r in ranks
        ]

    def generate(
        self,
        client: Any,
        facts: dict[str, Any],
        description: str,
        journal: Journal,
        seed: int | None = None,
    ) -> list[Candidate]:
        """Rank 1..k instructions, each well formed or the best of its attempts (marked fallback), then any
        retrieved candidates."""
        seed = self.seed if seed is None else int(seed)
        data_type, category = task_prompt_fields(facts, self.categories)
        guidance = Guidance()
        if self.retriever is not None and (self.retrieval != "none" or self.decide == "vote"):
            guidance = self.retriever.guidance(
                facts, description, data_type, category, self.retrieval, self.decide
            )
        context = self.context_format.render(guidance.examples) if guidance.examples else ""
        tokenizer = tokenizer_of(client) if self.max_prompt_tokens else None
        prompts = self.prompts(facts, description, tokenizer, context)
        journal.meta["instruction_prompts"] = prompts  # exactly what the model saw (ranks 1..k)
        journal.meta["instruction_stage"] = {
            **self.settings(),
            **guidance.meta,
            "examples": len(guidance.examples),
            "voted_family": guidance.family,
        }
        sample = self._guided_round if self.sampling == "guided" else self._free_round
        tried: dict[int, list[tuple[Node, Instruction]]] = {r: [] for r in range(1, self.k + 1)}
        # retrieval=only: the nearest competitions' instructions alone, the model writes none (an ablation arm)
        pending = [] if self.retrieval == "only" else list(range(1, self.k + 1))
        started = time.perf_counter()
        for attempt in range(self.max_resample + 1 if pending else 0):
            round_started = time.perf_counter()
            answers = sample(client, prompts, pending, attempt, seed, guidance)
            round_s = time.perf_counter() - round_started
            still = []
            for rank, (text, finish_reason, completions, used_seed) in zip(pending, answers, strict=True):
                parsed = parse_instruction(text)
                ok = well_formed(parsed, self.min_chars)
                previous = tried[rank][-1][0] if tried[rank] else None
                node = journal.add(
                    "instruction",
                    parent=previous,
                    rank=rank,
                    attempt=attempt,
                    instruction=text,
                    sections=sections_of(parsed),
                    llm=llm_usage(completions),
                    meta={
                        "seed": used_seed,
                        "finish_reason": finish_reason,
                        "missing": list(parsed.missing),
                        "prompt_chars": len(prompts[rank - 1]),
                        "sampling": self.sampling,
                        "source": "model",
                    },
                ).finish("ok" if ok else "malformed")
                tried[rank].append((node, parsed))
                if not ok:
                    still.append(rank)
            pending = still
            if not pending or attempt == self.max_resample:
                break
            elapsed = time.perf_counter() - started
            # a round costs about what the last one did (one batch, as long as its longest answer): on a slow
            # model (CPU) a round that would end past the budget is skipped; the coders cope with fallbacks
            if self.resample_budget_s is not None and elapsed + round_s > self.resample_budget_s:
                journal.meta["resample_skipped"] = (
                    f"{elapsed:.1f}s spent on instructions + {round_s:.1f}s for another round > "
                    f"resample_budget_s={self.resample_budget_s:g}: rank(s) {pending} not resampled"
                )
                log.info("%s: %s", facts.get("slug"), journal.meta["resample_skipped"])
                break
            log.info("%s: resampling malformed rank(s) %s", facts.get("slug"), pending)
        out = [self._pick(rank, tried[rank], facts) for rank in range(1, self.k + 1) if tried[rank]]
        for extra in guidance.candidates:
            parsed = parse_instruction(extra["text"])
            rank = len(out) + 1
            node = journal.add(
                "instruction",
                rank=rank,
                attempt=0,
                instruction=parsed.text,
                sections=sections_of(parsed),
                meta={
                    "source": "retrieved",
                    "competition": extra["competition"],
                    "similarity": round(float(extra["similarity"]), 4),
                    "missing": list(parsed.missing),
                },
            ).finish("ok" if well_formed(parsed) else "malformed")
            out.append(Candidate(rank, parsed.text, parsed, node.id, attempts=1, source="retrieved"))
        return out

    def _pick(self, rank: int, tried: list[tuple[Node, Instruction]], facts: dict[str, Any]) -> Candidate:
        for node, parsed in tried:
            if node.status == "ok":
                return Candidate(rank, parsed.text, parsed, node.id, attempts=len(tried))
        # every attempt malformed: keep the most complete one (fewest missing sections, then the longest text)
        node, parsed = min(tried, key=lambda t: (len(t[1].missing), -len(t[1].text), t[0].step))
        node.status = "fallback"
        node.notes.append(
            f"all {len(tried)} attempt(s) lacked core sections; kept this one as is (missing: "
            f"{', '.join(parsed.missing) or 'none'})"
        )
        log.warning(
            "%s: rank %d instruction malformed after %d attempt(s): falling back to the most complete one",
            facts.get("slug"),
            rank,
            len(tried),
        )
        return Candidate(rank, parsed.text, parsed, node.id, attempts=len(tried), fallback=True)
