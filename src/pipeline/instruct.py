"""Ranked instructions: the fine-tuned model's top-k solution instructions for a task (the paper's Figure 5).

For ranks 1..k the prompt is rendered by the SAME template object that rendered the training pairs
(`conf/prompt/<name>.yaml`, Figure 4 by default): the task's description, its data type in the corpus
spelling (`to_corpus_data_type`) and its metric as the corpus category (`conf/metric_categories/`). All k
prompts go to the model in one batched call (temperature 0.7 from config). Each answer is parsed into sections;
an answer that lacks a core section (preprocessing, architecture, training) is resampled with a new seed, all
malformed ranks again in one batch, at most `max_resample` times, and only while another round (estimated to
take as long as the last one) would end within `resample_budget_s` seconds (a slow CPU model would double its
latency for each round). Every attempt is a journal node. When every
attempt of a rank fails, the most complete attempt is kept and marked `fallback` — the coders cope with
garbage (the compiler falls back to the data type's default plan).

Descriptions are turned into plain text (`plain_description`: no markdown, no emoji), like the corpus's. The
description is the only part of the prompt that may be shortened, as in training: to `max_prompt_tokens`
with the model's tokenizer when the client has one (local models), else to `max_description_chars`.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from src.corpus.instruction import Instruction, parse_instruction
from src.corpus.metric_categories import MetricCategories
from src.corpus.prompts import PromptTemplate, to_corpus_data_type
from src.llm import ChatRequest, Completion
from src.pipeline.journal import Journal, Node, llm_usage

log = logging.getLogger(__name__)

RESAMPLE_SEED_STRIDE = (
    1000  # attempt a of rank r samples with seed + a * stride (a distinct, cacheable request)
)


@dataclass
class Candidate:
    """One ranked instruction as the pipeline uses it."""

    rank: int
    text: str
    instruction: Instruction
    node_id: str
    attempts: int
    fallback: bool = False

    @property
    def sections(self) -> dict[str, str | None]:
        return sections_of(self.instruction)


def sections_of(instruction: Instruction) -> dict[str, str | None]:
    return {
        "preprocessing": instruction.preprocessing,
        "architecture": instruction.architecture,
        "training": instruction.training,
        "prediction": instruction.prediction,
    }


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


def cut_words(text: str, max_chars: int) -> str:
    """The longest word-boundary prefix of `text` with at most `max_chars` characters."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_MARKUP = re.compile(r"\*\*|__|`+|<[^>]{1,40}>")
_JOINERS = {"\u200d", "\ufe0f", "\ufe0e"}


def plain_description(text: str) -> str:
    """A Kaggle description.md as the plain one-paragraph text the corpus descriptions are: markdown images,
    link targets, heading marks and emphasis dropped, emoji and other pictographs removed, whitespace collapsed.
    """
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _HEADING.sub("", text)
    text = _MARKUP.sub("", text)
    text = "".join(
        ch for ch in text if ch not in _JOINERS and unicodedata.category(ch) not in ("So", "Cs", "Co", "Cn")
    )
    return " ".join(text.split())


def task_prompt_fields(facts: dict[str, Any], categories: MetricCategories) -> tuple[str, str]:
    """(data type in corpus spelling, metric category) of a task, as the training prompts wrote them."""
    data_type = to_corpus_data_type(str(facts["data_type"]))
    metric = str(facts["metric"])
    category = categories.category_for_task_metric(metric)
    if category is None:
        log.warning(
            "metric %r has no corpus category in %s: the prompt names it as is", metric, categories.source
        )
        category = metric
    return data_type, category


def well_formed(instruction: Instruction, min_chars: int = 0) -> bool:
    """All core sections present (and the text not trivially short)."""
    return instruction.is_complete and len(instruction.text) >= min_chars


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
    ) -> None:
        if k < 1:
            from src.errors import PipesynthError

            raise PipesynthError(
                f"k={k}: at least one instruction is needed", "set k=3 (the paper's setting)"
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

    def prompts(self, facts: dict[str, Any], description: str, tokenizer: Any = None) -> list[str]:
        """The k prompts (rank 1..k), the description fitted to the budget."""
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
            prompts.append(self.template.render_prompt(desc, data_type, category, rank))
        return prompts

    def _request(self, prompt: str, rank: int, attempt: int, seed: int) -> ChatRequest:
        return ChatRequest(
            prompt=prompt,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=seed + attempt * RESAMPLE_SEED_STRIDE,
            tag=f"instruct.rank{rank}" + (f".resample{attempt}" if attempt else ""),
        )

    def generate(
        self,
        client: Any,
        facts: dict[str, Any],
        description: str,
        journal: Journal,
        seed: int | None = None,
    ) -> list[Candidate]:
        """Rank 1..k instructions, each well formed or the best of its attempts (marked fallback)."""
        seed = self.seed if seed is None else int(seed)
        tokenizer = tokenizer_of(client) if self.max_prompt_tokens else None
        prompts = self.prompts(facts, description, tokenizer)
        journal.meta["instruction_prompts"] = prompts  # exactly what the model saw (ranks 1..k)
        tried: dict[int, list[tuple[Node, Instruction]]] = {r: [] for r in range(1, self.k + 1)}
        pending = list(range(1, self.k + 1))
        started = time.perf_counter()
        for attempt in range(self.max_resample + 1):
            requests = [self._request(prompts[r - 1], r, attempt, seed) for r in pending]
            round_started = time.perf_counter()
            completions: list[Completion] = client.complete(requests)
            round_s = time.perf_counter() - round_started
            still = []
            for rank, request, completion in zip(pending, requests, completions, strict=True):
                text = completion.text.strip()
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
                    llm=llm_usage([completion]),
                    meta={
                        "seed": request.seed,
                        "finish_reason": completion.finish_reason,
                        "missing": list(parsed.missing),
                        "prompt_chars": len(prompts[rank - 1]),
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
        return [self._pick(rank, tried[rank], facts) for rank in range(1, self.k + 1)]

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
