"""Retrieval for the instruction stage: corpus neighbours as few-shot context or extra candidates, and the family vote (decide=vote)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from src.corpus.prompts import PromptTemplate
from src.errors import PipesynthError
from src.pipeline.instruct.text import cut_words, plain_description

log = logging.getLogger(__name__)


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
        wanted = {"context": self.n_examples, "candidates": self.n_candidates, "only": self.n_candidates}.get(
            retrieval, 0
        )
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
        elif retrieval in ("candidates", "only"):
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
