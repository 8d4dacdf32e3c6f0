"""Prompt templates as data: one object renders the inference prompt and the training pair from the same code.

A template comes from `conf/prompt/<name>.yaml` (`_target_` + hydra.utils.instantiate). Training text is
`render_prompt(...) + render_completion(instruction)`, and inference sends `render_prompt(...)` itself, so the
inference prompt is a byte-for-byte prefix of what the model was trained on (the paper's released code worded
the two differently).

Special tokens (the choice, for every template):
- `figure4` (default) holds no special-token text. BOS comes from the tokenizer: encode the prompt with
  `add_special_tokens=template.add_special_tokens` (True) and the completion without special tokens. EOS is
  the tokenizer's `eos_token_id`, appended after the completion ids when `template.append_eos` is True. So the
  same template works for Llama-2 (`<s>`/`</s>`) and SmolLM2 (`<|im_start|>`/`<|im_end|>`) without literal
  token text that one of them would read as plain characters.
- `chat` renders through `tokenizer.apply_chat_template`; the chat template writes its own BOS and end of turn,
  so `add_special_tokens` and `append_eos` are False. It needs a tokenizer: `ChatPromptTemplate(...,
  tokenizer=tok)` or `template.with_tokenizer(tok)`.
- `linguacodus_release` reproduces the release CSV byte for byte, literal `<s>` and `</s>` included (a Llama
  tokenizer reads them as its special tokens), so both flags are False.

Description budget: the description is the only part that may be shortened. `fit_description(tokenizer,
max_prompt_tokens, description, data_type, metric_category, rank)` returns the longest word-boundary prefix of
the description whose rendered prompt fits `max_prompt_tokens` (counted as the training code encodes it), and
the caller renders with it: `render_prompt(description=fitted, ...)`. The instruction is never cut.

Data types: prompts use the corpus (Code4ML) spelling ("tabular data", "time series"); a task's own data type
("tabular", "time_series") converts with `to_corpus_data_type`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.config import REPO_ROOT
from src.corpus.filters import data_type_components
from src.corpus.ranks import ordinal_suffix, ordinal_words, release_ordinal
from src.errors import PipesynthError

PROMPT_FIELDS = frozenset({"description", "data_type", "metric", "rank"})
COMPLETION_FIELDS = frozenset({"instruction"})
RankFormat = Literal["number", "ordinal", "words", "release"]
_RANK_FORMATS: dict[str, Any] = {
    "number": str,  # "This solution has the 1 place in rating." (Figure 4)
    "ordinal": ordinal_suffix,  # "1st"
    "words": ordinal_words,  # "first", "twenty-first"
    "release": release_ordinal,  # "ninth", "28.0th" (the release CSV, defect included)
}
_CORPUS_SPELLING = {
    "tabular": "tabular data",
    "image": "image data",
    "text": "text data",
    "time_series": "time series",
    "audio": "audio",
    "video": "video",
}


def to_corpus_data_type(data_type: str) -> str:
    """A task's data type ("tabular", "time_series", "tabular+text") in the corpus spelling used by prompts."""
    parts = data_type_components(data_type)
    return "_".join(_CORPUS_SPELLING.get(p, p) for p in parts)


def _fields(template: str, allowed: frozenset[str], what: str) -> None:
    """Refuse placeholders the template cannot fill (a typo would otherwise fail at the first render)."""
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = used - allowed
    if unknown:
        raise PipesynthError(
            f"the {what} template uses unknown placeholder(s) {sorted(unknown)}",
            f"use only {sorted(allowed)} (write literal braces as {{{{ and }}}})",
        )


class PromptTemplate:
    """A text template split at the prompt/completion boundary (the paper's `[/INST]`)."""

    requires_tokenizer = False

    def __init__(
        self,
        prompt: str,
        completion: str = " {instruction}",
        name: str = "custom",
        rank_format: RankFormat = "number",
        clean_description: bool = True,
        add_special_tokens: bool = True,
        append_eos: bool = True,
    ) -> None:
        if rank_format not in _RANK_FORMATS:
            raise PipesynthError(
                f"unknown prompt rank_format '{rank_format}'", f"use one of {sorted(_RANK_FORMATS)}"
            )
        _fields(prompt, PROMPT_FIELDS, "prompt")
        _fields(completion, COMPLETION_FIELDS, "completion")
        self.name = name
        self.prompt = prompt
        self.completion = completion
        self.rank_format = rank_format
        self.clean_description = clean_description
        self.add_special_tokens = add_special_tokens
        self.append_eos = append_eos

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, rank_format={self.rank_format!r})"

    def _values(self, description: str, data_type: str, metric_category: str, rank: int) -> dict[str, str]:
        if self.clean_description:
            # the template supplies the closing period ("Problem: {description}. [/INST]")
            description = description.strip().rstrip(".").rstrip()
        return {
            "description": description,
            "data_type": data_type,
            "metric": metric_category,
            "rank": _RANK_FORMATS[self.rank_format](int(rank)),
        }

    def render_prompt(self, description: str, data_type: str, metric_category: str, rank: int) -> str:
        """The model input, ending at the completion boundary; identical at training and inference time."""
        return self.prompt.format_map(self._values(description, data_type, metric_category, rank))

    def render_completion(self, instruction: str) -> str:
        """The training target that follows the prompt (EOS handling: see the module docstring)."""
        return self.completion.format_map({"instruction": instruction.strip()})

    def render_pair(self, example: Mapping[str, Any]) -> dict[str, str]:
        """{"prompt", "completion"} for a corpus row (description, data_type, metric_category, rank, instruction)."""
        return {
            "prompt": self.render_prompt(
                example["description"], example["data_type"], example["metric_category"], example["rank"]
            ),
            "completion": self.render_completion(example["instruction"]),
        }

    def count_tokens(self, tokenizer: Any, text: str) -> int:
        """Tokens of a prompt as training encodes it (with the tokenizer's special tokens when the template says so)."""
        return len(tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"])

    def fit_description(
        self,
        tokenizer: Any,
        max_prompt_tokens: int,
        description: str,
        data_type: str,
        metric_category: str,
        rank: int,
    ) -> str:
        """The longest word-boundary prefix of `description` whose rendered prompt has <= max_prompt_tokens."""

        def fits(desc: str) -> bool:
            prompt = self.render_prompt(desc, data_type, metric_category, rank)
            return self.count_tokens(tokenizer, prompt) <= max_prompt_tokens

        if fits(description):
            return description
        # cut points: ends of words; binary search for the last one that fits (token counts grow with length)
        cuts = [m.end() for m in re.finditer(r"\S+", description)]
        lo, hi = 0, len(cuts) - 1
        best = -1
        while lo <= hi:
            mid = (lo + hi) // 2
            if fits(description[: cuts[mid]]):
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        if best < 0:
            if fits(""):
                return ""
            empty = self.count_tokens(tokenizer, self.render_prompt("", data_type, metric_category, rank))
            raise PipesynthError(
                f"the '{self.name}' prompt needs {empty} tokens without any description, more than "
                f"max_prompt_tokens={max_prompt_tokens}",
                "raise the sequence length / prompt budget or use a shorter prompt template",
            )
        return description[: cuts[best]]


class ChatPromptTemplate(PromptTemplate):
    """The user turn rendered through the tokenizer's own chat template (`apply_chat_template`)."""

    requires_tokenizer = True

    def __init__(
        self,
        user: str,
        system: str | None = None,
        name: str = "chat",
        rank_format: RankFormat = "number",
        clean_description: bool = True,
        tokenizer: Any = None,
    ) -> None:
        super().__init__(
            prompt=user,
            completion="{instruction}",
            name=name,
            rank_format=rank_format,
            clean_description=clean_description,
            add_special_tokens=False,  # the chat template writes BOS itself
            append_eos=False,  # and closes the assistant turn itself
        )
        if system is not None:
            _fields(system, frozenset(), "system")
        self.system = system
        self.tokenizer = tokenizer

    def with_tokenizer(self, tokenizer: Any) -> ChatPromptTemplate:
        """A copy bound to `tokenizer`."""
        return ChatPromptTemplate(
            self.prompt, self.system, self.name, self.rank_format, self.clean_description, tokenizer
        )

    def _tok(self) -> Any:
        if self.tokenizer is None:
            raise PipesynthError(
                f"the '{self.name}' prompt template renders through a tokenizer's chat template and has none",
                "pass tokenizer= when building the corpus, or call template.with_tokenizer(tok)",
            )
        if not getattr(self.tokenizer, "chat_template", None):
            raise PipesynthError(
                f"tokenizer {type(self.tokenizer).__name__} has no chat template",
                "use prompt=figure4 for a base model without a chat template",
            )
        return self.tokenizer

    def _messages(self, user: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]

    def render_prompt(self, description: str, data_type: str, metric_category: str, rank: int) -> str:
        user = super().render_prompt(description, data_type, metric_category, rank)
        return self._tok().apply_chat_template(
            self._messages(user), tokenize=False, add_generation_prompt=True
        )

    def render_completion(self, instruction: str) -> str:
        # the assistant turn as the chat template writes it after a generation prompt (end of turn included);
        # it does not depend on the user turn, so a placeholder user turn is enough
        messages = self._messages("x")
        tok = self._tok()
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(
            [*messages, {"role": "assistant", "content": instruction.strip()}], tokenize=False
        )
        if not full.startswith(prompt):
            raise PipesynthError(
                f"the chat template of {type(tok).__name__} does not extend the generation prompt with the "
                "assistant turn, so prompt and completion cannot be split",
                "use prompt=figure4 with this model",
            )
        return full[len(prompt) :]


def build_template(cfg: Any, tokenizer: Any = None) -> PromptTemplate:
    """A template from a `cfg.prompt` node (or a conf/prompt name or YAML path), bound to `tokenizer` if it needs one."""
    if isinstance(cfg, (str, Path)):
        path = Path(cfg)
        if not path.suffix:
            path = REPO_ROOT / "conf" / "prompt" / f"{cfg}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (REPO_ROOT / "conf" / "prompt").glob("*.yaml"))
            raise PipesynthError(f"prompt template '{cfg}' not found", f"use one of {known} or a YAML path")
        cfg = OmegaConf.load(path)
    try:
        template = instantiate(cfg)
    except InstantiationException as err:
        if isinstance(err.__cause__, PipesynthError):
            raise err.__cause__ from None  # e.g. an unknown placeholder in the YAML template
        raise PipesynthError(
            f"cannot build the prompt template: {err}", "check conf/prompt/<name>.yaml"
        ) from None
    if not isinstance(template, PromptTemplate):
        raise PipesynthError(
            f"cfg.prompt built a {type(template).__name__}, not a PromptTemplate",
            "set `_target_: src.corpus.prompts.PromptTemplate` (or ChatPromptTemplate) in conf/prompt/",
        )
    if template.requires_tokenizer and tokenizer is not None:
        template = template.with_tokenizer(tokenizer)  # type: ignore[attr-defined]
    return template
