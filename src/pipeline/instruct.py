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

Sampling (`sampling`): `free` lets the model write the whole answer (the paper; an ablation now). `guided`
(format by construction) writes each core heading itself ("Data preprocessing:", ... from `sections`, data in
conf/prompt/sections/) and lets the model fill that section until the next heading, the end of text or the
section's token budget: one batched call per section for all pending ranks, the request's `prefix` holding
everything written so far. A section's body is cut where the model starts another heading, so every sample
has all core sections unless the model writes nothing at all into one.

Retrieval (`retrieval`, via a `Retriever`, see `CorpusRetriever`): `none`; `context` puts the top instructions
of several nearest corpus competitions (task names stripped) before the request as examples (the text around
them is data: conf/prompt/context/), with stop strings at a new example; `candidates` adds the nearest
competitions' rank-1 instructions after the k model ranks as extra options (journal `meta.source=retrieved`).
Who decides the model family (`decide`): `model`, or `vote` — the neighbours' and the corpus majority's vote
picks the family and the guided sampler writes "Model architecture: <family phrase>" itself, the model writing
the rest around it. Every choice and every excluded competition goes into `journal.meta["instruction_stage"]`.

Descriptions are turned into plain text (`plain_description`: no markdown, no emoji), like the corpus's. The
description is the only part of the prompt that may be shortened, as in training: to `max_prompt_tokens`
with the model's tokenizer when the client has one (local models), else to `max_description_chars`.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from src.corpus.instruction import CORE_SECTIONS, Instruction, _heading, parse_instruction
from src.corpus.metric_categories import MetricCategories
from src.corpus.prompts import PromptTemplate, to_corpus_data_type
from src.errors import PipesynthError
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
    source: str = "model"  # "model" | "retrieved" (retrieval=candidates: a corpus neighbour's rank-1 text)

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
    if facts.get("metric_category"):  # a corpus competition (benchmarks) names its category itself
        return data_type, str(facts["metric_category"])
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


SAMPLING_MODES = ("free", "guided")
RETRIEVAL_MODES = ("none", "context", "candidates")
DECIDE_MODES = ("model", "vote")


@dataclass(frozen=True)
class GuidedSection:
    """One heading the guided sampler writes itself, and the token budget of the body the model writes."""

    key: str
    heading: str
    max_tokens: int


def guided_sections(cfg: Mapping[str, Any] | None) -> list[GuidedSection]:
    """The `sections.headings` mapping (key -> {text, max_tokens}) as an ordered list; it must cover the core
    sections, since a guided sample is well formed by construction only if the sampler writes all of them."""
    headings = dict((cfg or {}).get("headings") or {})
    out = [
        GuidedSection(str(key), str(v["text"]), int(v["max_tokens"]))
        for key, v in headings.items()
        if v is not None
    ]
    missing = [k for k in CORE_SECTIONS if k not in {s.key for s in out}]
    bad = [s.heading for s in out if parse_instruction(f"{s.heading}\nx").missing == CORE_SECTIONS]
    if missing or bad or any(s.max_tokens < 1 for s in out):
        raise PipesynthError(
            f"guided sampling needs a heading with a positive max_tokens for each core section {CORE_SECTIONS}; "
            f"missing {missing}, unrecognised headings {bad}",
            "see conf/prompt/sections/corpus.yaml (headings: {preprocessing: {text: 'Data preprocessing:', "
            "max_tokens: 96}, ...})",
        )
    return out


@dataclass
class Guidance:
    """What retrieval and the family vote contribute to one task's instructions (all of it is journaled)."""

    examples: list[str] = field(default_factory=list)  # few-shot instruction texts (retrieval=context)
    candidates: list[dict[str, Any]] = field(default_factory=list)  # {text, competition, similarity}
    family: str | None = None  # decide=vote: the family the instruction is written around
    phrase: str | None = None  # how the instruction names it
    settings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # neighbours, ballots, excluded competitions


class Retriever(Protocol):
    """Looks up corpus neighbours (and the family vote) for one task."""

    def guidance(
        self,
        facts: dict[str, Any],
        description: str,
        data_type: str,
        metric_category: str,
        retrieval: str,
        decide: str,
    ) -> Guidance: ...


class CorpusRetriever:
    """The corpus index (src/corpus/retrieval.py) behind a `Retriever`: nearest competitions (names stripped by
    the index), the evaluated task's own competitions excluded (src/corpus/contamination.py, unless
    `exclude_task=false`), and the family vote of the neighbours and the corpus majority.

    `rows`: corpus rows (competition, description, data_type, metric_category, rank, instruction).
    """

    def __init__(
        self,
        cfg_retrieval: Mapping[str, Any],
        rows: Any,
        vote: Mapping[str, Any] | None = None,
        exclusion: Any = None,
    ) -> None:
        from src.corpus.retrieval import CorpusIndex

        self.rows = rows
        self.index = CorpusIndex.from_config(cfg_retrieval, rows, exclusion)
        self.n_examples = int(cfg_retrieval.get("n_neighbours", 3))
        self.n_candidates = int(cfg_retrieval.get("n_candidates", 2))
        self.n_vote = int(cfg_retrieval.get("n_vote", 5))
        self.max_example_chars = int(cfg_retrieval.get("max_example_chars", 700))
        self.exclude_task = bool(cfg_retrieval.get("exclude_task", True))
        # `decide` config (conf/decide/vote.yaml): the vote_family weights under `vote`
        self.max_settings = int((vote or {}).get("max_settings", 3))
        self.vote_kwargs = {
            k: (tuple(v) if k == "rank_weights" else float(v))
            for k, v in dict((vote or {}).get("vote") or {}).items()
            if k in ("rank_weights", "majority_weight", "similarity_power")
        }

    def excluded(self, facts: dict[str, Any], description: str) -> tuple[list[str], dict[str, Any]]:
        """The corpus competitions that are this task (contamination), with the per-task row count."""
        if not self.exclude_task:
            return [], {"opt_out": True}
        from src.corpus.contamination import TaskText, exclusion_for_tasks

        slug = str(facts.get("slug", "task"))
        task = TaskText(slug=slug, title=str(facts.get("title") or slug), description=description)
        exclusion = exclusion_for_tasks([task], self.rows)
        return sorted(exclusion.competitions), {"rows_removed": dict(exclusion.report)}

    def guidance(
        self,
        facts: dict[str, Any],
        description: str,
        data_type: str,
        metric_category: str,
        retrieval: str,
        decide: str,
    ) -> Guidance:
        from src.corpus.families import family_phrase
        from src.corpus.retrieval import vote_family

        excluded, report = self.excluded(facts, description)
        # a caller may name more (leave-one-competition-out benchmarks); the index's suite exclusion too
        named = set(facts.get("exclude_competitions") or ())
        excluded = sorted(set(excluded) | named | set(self.index.exclusion.competitions))
        wanted = {"context": self.n_examples, "candidates": self.n_candidates}.get(retrieval, 0)
        n = max(wanted, self.n_vote if decide == "vote" else 0, 1)
        neighbours = self.index.nearest(
            plain_description(description), data_type, metric_category, n=n, exclude_competitions=excluded
        )
        out = Guidance(
            meta={
                "excluded_competitions": excluded,
                "exclusion": report,
                "neighbours": [
                    {
                        "competition": nb.competition,
                        "similarity": round(float(nb.similarity), 4),
                        "families": list(nb.families[:3]),
                    }
                    for nb in neighbours
                ],
            }
        )
        if retrieval == "context":
            out.examples = [
                cut_words(nb.instructions[0], self.max_example_chars)
                for nb in neighbours[: self.n_examples]
                if nb.instructions
            ]
        elif retrieval == "candidates":
            out.candidates = [
                {
                    "text": nb.instructions[0],
                    "competition": nb.competition,
                    "similarity": float(nb.similarity),
                }
                for nb in neighbours[: self.n_candidates]
                if nb.instructions
            ]
        if decide == "vote":
            majority = self.index.majority(data_type, metric_category, exclude_competitions=excluded)
            vote = vote_family(neighbours, majority, **self.vote_kwargs)
            out.family = vote.family
            out.settings = dict(list((vote.settings or {}).items())[: self.max_settings])
            out.phrase = family_phrase(vote.family) if vote.family else None
            out.meta["vote"] = {**vote.as_dict(), "majority": majority}
        return out


@dataclass(frozen=True)
class ContextFormat:
    """How retrieved examples are written before the request (data: conf/prompt/context/*.yaml)."""

    header: str = "Instructions written for similar problems:"
    example: str = "### Example {n}\n{instruction}"
    footer: str = "### Now the instruction for this problem"
    stop: tuple[str, ...] = ("### Example", "### Now")

    def render(self, examples: Sequence[str]) -> str:
        blocks = [self.example.format(n=i, instruction=text.strip()) for i, text in enumerate(examples, 1)]
        return "\n\n".join([self.header, *blocks, self.footer]) + "\n\n"


def build_retriever(cfg: Mapping[str, Any]) -> CorpusRetriever | None:
    """The corpus retriever a generation config asks for (`retrieval.mode` != none or `decide.mode` == vote),
    from the corpus at `retrieval.corpus_path`; the index leaves out the suites/tasks of `retrieval.exclude_*`."""
    retrieval = cfg.get("retrieval") or {}
    decide = cfg.get("decide") or {}
    if retrieval.get("mode", "none") == "none" and decide.get("mode", "model") != "vote":
        return None
    path = retrieval.get("corpus_path")
    if not path:
        raise PipesynthError(
            "retrieval / decide=vote need the corpus, and `retrieval.corpus_path` is not set",
            "set retrieval.corpus_path=${paths.corpus_path} (the Linguacodus CSV), see conf/retrieval/",
        )
    from src.corpus.contamination import exclusion_from_config
    from src.corpus.linguacodus import load_linguacodus

    rows = load_linguacodus(path)[0].to_pandas()
    exclusion = exclusion_from_config(retrieval, rows, retrieval.get("data_dir") or ".")
    return CorpusRetriever(retrieval, rows, vote=decide, exclusion=exclusion)


def context_format(cfg: Mapping[str, Any] | None) -> ContextFormat:
    """A ContextFormat from a `context` config node (conf/prompt/context/*.yaml); the defaults when absent."""
    if not cfg:
        return ContextFormat()
    data = dict(cfg)
    return ContextFormat(
        header=str(data.get("header", ContextFormat.header)),
        example=str(data.get("example", ContextFormat.example)),
        footer=str(data.get("footer", ContextFormat.footer)),
        stop=tuple(data.get("stop") or ContextFormat.stop),
    )


def sends_messages(template: PromptTemplate) -> bool:
    """A chat template whose client has no tokenizer (an OpenAI-compatible server, a scripted client): the
    request goes as chat messages and the server applies its own chat template."""
    return bool(template.requires_tokenizer) and getattr(template, "tokenizer", None) is None


def render_with_context(
    template: PromptTemplate, context: str, description: str, data_type: str, category: str, rank: int
) -> str:
    """The request with `context` before it: in the user turn for a chat template, before the text otherwise."""
    if sends_messages(template):  # the user turn only: the request carries it as chat messages
        return context + PromptTemplate.render_prompt(template, description, data_type, category, rank)
    if not context:
        return template.render_prompt(description, data_type, category, rank)
    if template.requires_tokenizer:
        request = PromptTemplate.render_prompt(template, description, data_type, category, rank)
        messages = template._messages(context + request)  # type: ignore[attr-defined]
        return template._tok().apply_chat_template(  # type: ignore[attr-defined]
            messages, tokenize=False, add_generation_prompt=True
        )
    return context + template.render_prompt(description, data_type, category, rank)


def _finish_body(text: str, finish_reason: str) -> str:
    """A body cut at its budget ends at its last complete line or sentence, when that keeps most of it."""
    text = text.rstrip()
    if finish_reason != "length":
        return text
    cut = max(text.rfind("\n"), text.rfind(". ") + 1 if ". " in text else -1)
    if text.endswith("."):
        return text
    return text[:cut].rstrip() if cut > len(text) // 2 else text


def section_body(text: str, headings: Sequence[str]) -> str:
    """The body the model wrote after a heading: up to where it began one of the sampler's `headings` itself.

    Lines the section parser would read as headings ("1. Data cleaning: ...", "**Model Evaluation:**") stay in
    the body, indented, so the instruction still parses into exactly the sampler's sections.
    """
    titles = [h.rstrip(": ").strip().lower() for h in headings]
    lines = text.split("\n")
    body = [lines[0].strip()]  # the rest of the heading's own line
    for line in lines[1:]:
        found = _heading(line)
        if found is not None and any(found.title.lower().startswith(t) for t in titles):
            break  # the model started a section the sampler writes itself
        body.append("  " + line.lstrip() if found is not None and found.indent == 0 else line.rstrip())
    while body and not body[0].strip():
        body.pop(0)
    return "\n".join(body).rstrip()


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
                r: given + _finish_body(c.text, c.finish_reason)
                for r, c in zip(ranks, completions, strict=True)
            }
            # a model that ends its turn right after a heading (it thinks it said it all) gets the section's
            # first bullet written for it, once, in one more batch
            empty = [i for i, r in enumerate(ranks) if not section_body(texts[r], other)]
            if empty:
                again = [replace(requests[i], prefix=requests[i].prefix + "\n-") for i in empty]
                for i, c in zip(empty, client.complete(again), strict=True):
                    used[ranks[i]].append(c)
                    texts[ranks[i]] = given + "\n-" + _finish_body(c.text, c.finish_reason)
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
        pending = list(range(1, self.k + 1))
        started = time.perf_counter()
        for attempt in range(self.max_resample + 1):
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
        out = [self._pick(rank, tried[rank], facts) for rank in range(1, self.k + 1)]
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
