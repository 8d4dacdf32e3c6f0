"""The paper's LLM instruction extraction (Figure 3): an LLM reads a solution's code and writes the instruction.

An `InstructionExtractor` (`extract(code) -> str`) like the offline `StaticExtractor`, backed by any LLM client
through the response cache, so re-building a corpus re-uses earlier answers and counts tokens and cost. The
prompt is data: `conf/prompt/extract_figure3.yaml`. In a data config:

    extractor:
      _target_: src.corpus.extract_llm.LLMInstructionExtractor
      _recursive_: false          # `llm` stays a config: build_client wraps it in the cache
      llm: ${llm}                 # e.g. +llm=openai llm.model=gpt-3.5-turbo (the paper used GPT-3)
      prompt: extract_figure3
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.errors import PipesynthError
from src.llm import ChatRequest, LLMClient, build_client, user

log = logging.getLogger(__name__)
PROMPT_DIR = Path(__file__).resolve().parents[2] / "conf" / "prompt"


class ExtractionPrompt:
    """Figure 3's prompt: `template` with one `{code}` placeholder, sent as a user message or a raw prompt."""

    def __init__(
        self,
        template: str,
        name: str = "custom",
        system: str | None = None,
        as_chat: bool = True,
        max_code_chars: int | None = 24000,
    ) -> None:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        if fields != {"code"}:
            raise PipesynthError(
                f"the extraction prompt '{name}' must use exactly the placeholder {{code}}, found {sorted(fields)}",
                "write the template with one {code} (literal braces as {{ and }})",
            )
        self.template = template
        self.name = name
        self.system = system
        self.as_chat = as_chat
        self.max_code_chars = max_code_chars

    def fit_code(self, code: str) -> str:
        """The code, cut in the middle when longer than `max_code_chars` (imports and the end both matter)."""
        limit = self.max_code_chars
        code = code.strip()
        if not limit or len(code) <= limit:
            return code
        head = code[: limit * 2 // 3].rsplit("\n", 1)[0]
        tail = code[-(limit - len(head)) :].split("\n", 1)[-1]
        return f"{head}\n# ... [{len(code) - len(head) - len(tail)} characters cut] ...\n{tail}"

    def render(self, code: str) -> str:
        return self.template.format(code=self.fit_code(code))

    def request(self, code: str, **sampling: Any) -> ChatRequest:
        text = self.render(code)
        if self.as_chat:
            return ChatRequest(messages=user(text, system=self.system), tag="extract", **sampling)
        return ChatRequest(prompt=text, tag="extract", **sampling)


def load_extraction_prompt(
    prompt: ExtractionPrompt | DictConfig | Mapping[str, Any] | str,
) -> ExtractionPrompt:
    """A prompt object from itself, a config node, a conf/prompt name, or a YAML path."""
    if isinstance(prompt, ExtractionPrompt):
        return prompt
    if isinstance(prompt, (str, Path)):
        path = Path(prompt)
        if not path.suffix:
            path = PROMPT_DIR / f"{prompt}.yaml"
        if not path.is_file():
            raise PipesynthError(
                f"extraction prompt '{prompt}' not found",
                "use a conf/prompt name such as extract_figure3, or a YAML path",
            )
        prompt = OmegaConf.load(path)
    data = OmegaConf.to_container(prompt, resolve=True) if isinstance(prompt, DictConfig) else dict(prompt)
    assert isinstance(data, dict)
    data.pop("_target_", None)
    return ExtractionPrompt(**data)


class LLMInstructionExtractor:
    """`extract(code) -> str` by asking an LLM with the Figure 3 prompt; `extract_many` sends one batch.

    Extraction wants the most likely reading of the code, so the default temperature is 0.
    """

    def __init__(
        self,
        llm: LLMClient | DictConfig | Mapping[str, Any],
        prompt: ExtractionPrompt | DictConfig | Mapping[str, Any] | str = "extract_figure3",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int = 0,
    ) -> None:
        self.llm: LLMClient = build_client(llm) if isinstance(llm, (DictConfig, Mapping)) else llm
        self.prompt = load_extraction_prompt(prompt)
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}

    def extract_many(self, codes: Sequence[str]) -> list[str]:
        """One instruction per code (stripped; may be empty), in one batched call."""
        completions = self.llm.complete([self.prompt.request(code, **self.sampling) for code in codes])
        for c in completions:
            if c.finish_reason == "length":
                log.warning(
                    "an extracted instruction hit max_tokens=%s and is cut off", self.sampling["max_tokens"]
                )
        return [c.text.strip() for c in completions]

    def extract(self, code: str) -> str:
        if not code.strip():
            raise ValueError("no code to extract an instruction from")
        [text] = self.extract_many([code])
        if not text:
            raise ValueError(f"the LLM ({self.llm.model_id}) returned an empty instruction")
        return text

    @property
    def usage(self) -> dict[str, Any]:
        """Token, call, cache-hit and cost counters of the wrapped client (when it keeps them)."""
        usage_dict = getattr(self.llm, "usage_dict", None)
        return usage_dict() if callable(usage_dict) else {}
