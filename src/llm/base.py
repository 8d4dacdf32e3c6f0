"""The one interface every LLM call goes through: requests, completions, sampling defaults, usage and cost.

A client takes a batch of `ChatRequest`s (chat messages or a raw prompt string, plus optional sampling
overrides) and returns one `Completion` per request, each holding `n` sampled choices. Clients fill unset
sampling fields from their config defaults (`SamplingParams`), so the response cache keys on the values that
were really used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

from src.errors import PipesynthError

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    """Fully resolved sampling settings of one request (the values the model really used)."""

    temperature: float = 0.7
    max_tokens: int = 512
    top_p: float = 1.0
    n: int = 1
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise PipesynthError(
                f"temperature must be >= 0, got {self.temperature}", "set llm.temperature=0.7"
            )
        if not 0 < self.top_p <= 1:
            raise PipesynthError(f"top_p must be in (0, 1], got {self.top_p}", "set llm.top_p=1.0")
        if self.max_tokens < 1 or self.n < 1:
            raise PipesynthError(
                f"max_tokens and n must be >= 1, got max_tokens={self.max_tokens}, n={self.n}",
                "set llm.max_tokens to a positive number of tokens",
            )


_SAMPLING_FIELDS = tuple(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class ChatRequest:
    """One prompt for the model: chat `messages` or a raw `prompt` string (sent as-is), never both.

    Sampling fields left as None take the client's defaults. `tag` names the pipeline stage that asked
    (logged; not part of the cache key). For several different samples of the same prompt use `n`, or vary
    `seed`: with a fixed seed an identical request is answered from the cache.

    `prefix` is text the assistant's answer starts with: the client renders the prompt (a raw prompt as is,
    chat messages through the chat template with the generation prompt), appends `prefix`, and returns only
    the continuation. It is part of the cache key. A client that cannot honour it raises PipesynthError.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    n: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    prefix: str | None = None
    tag: str = ""

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise PipesynthError("a ChatRequest needs exactly one of `messages` or `prompt`")
        if self.messages is not None:
            msgs = tuple(dict(m) for m in self.messages)
            for m in msgs:
                if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    raise PipesynthError(
                        f"bad chat message {m!r}",
                        f"every message is {{'role': one of {ROLES}, 'content': <str>}}",
                    )
            object.__setattr__(self, "messages", msgs)
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise PipesynthError(f"ChatRequest.prefix must be a string, got {type(self.prefix).__name__}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def kind(self) -> str:
        """'chat' for messages, 'text' for a raw prompt."""
        return "chat" if self.messages is not None else "text"

    def sampling(self, defaults: SamplingParams) -> SamplingParams:
        """This request's settings, unset fields taken from `defaults`."""
        values = {name: getattr(self, name) for name in _SAMPLING_FIELDS}
        return replace(defaults, **{k: v for k, v in values.items() if v is not None})

    def resolved(self, defaults: SamplingParams) -> ChatRequest:
        """A copy with every sampling field set (explicit `seed=None` in defaults stays None)."""
        return replace(self, **asdict(self.sampling(defaults)))

    def describe(self, width: int = 100) -> str:
        """A one-line summary for error messages and logs."""
        text = (
            self.prompt if self.prompt is not None else (self.messages or ({"content": ""},))[-1]["content"]
        )
        text = " ".join(text.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        tag = f"[{self.tag}] " if self.tag else ""
        return f"{tag}{self.kind} request {text!r}"


def user(content: str, system: str | None = None) -> tuple[Message, ...]:
    """Chat messages for one user turn, optionally after a system prompt."""
    msgs: list[Message] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": content})
    return tuple(msgs)


@dataclass
class Choice:
    """One sampled continuation."""

    text: str
    finish_reason: str = "stop"  # "stop" (end of sequence or a stop string) | "length" (max_tokens)


@dataclass
class Completion:
    """A model's answer to one request: `n` choices plus token counts, cache flag and attempts used."""

    choices: list[Choice]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 1  # 1 + retries the client needed
    latency_s: float = 0.0

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.choices]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        data = dict(data)
        data["choices"] = [Choice(**c) for c in data["choices"]]
        return cls(**data)


@runtime_checkable
class LLMClient(Protocol):
    """What every client offers. Build one from config with `src.llm.build_client(cfg.llm)`."""

    model_id: str  # identifies the weights (cache key): model name, or base model + adapter fingerprint
    defaults: SamplingParams

    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer every request (one batch where the backend allows); result i belongs to request i."""
        ...


class PriceTable:
    """USD per million tokens per model; a model name matches its longest listed prefix."""

    def __init__(self, prices: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.prices = {
            str(k): {"prompt": float(v["prompt"]), "completion": float(v["completion"])}
            for k, v in (prices or {}).items()
        }
        self._warned: set[str] = set()

    def lookup(self, model: str) -> dict[str, float] | None:
        matches = [k for k in self.prices if model == k or model.startswith(k)]
        return self.prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.lookup(model)
        if price is None:
            if model not in self._warned:
                self._warned.add(model)
                log.warning("no price for model %r in llm.prices: its cost is counted as 0", model)
            return 0.0
        return (prompt_tokens * price["prompt"] + completion_tokens * price["completion"]) / 1e6


@dataclass
class Usage:
    """Counters for one run: requests, cache hits, calls that reached a model, tokens, retries, cost."""

    requests: int = 0
    cache_hits: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what the cache hits would have cost
    seconds: float = 0.0
    by_tag: dict[str, int] = field(default_factory=dict)

    def record(self, request: ChatRequest, completion: Completion, cost: float) -> None:
        self.requests += 1
        self.by_tag[request.tag or "-"] = self.by_tag.get(request.tag or "-", 0) + 1
        if completion.cached:
            self.cache_hits += 1
            self.saved_usd += cost
            return
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.retries += completion.attempts - 1
        self.cost_usd += cost
        self.seconds += completion.latency_s

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        out["saved_usd"] = round(self.saved_usd, 6)
        out["seconds"] = round(self.seconds, 3)
        return out


def ask(client: LLMClient, content: str | Sequence[Message], **params: Any) -> Completion:
    """One request: a string is sent as a single user message; pass `raw=True` to send it as a raw prompt."""
    raw = params.pop("raw", False)
    if isinstance(content, str):
        request = (
            ChatRequest(prompt=content, **params) if raw else ChatRequest(messages=user(content), **params)
        )
    else:
        request = ChatRequest(messages=tuple(content), **params)
    return client.complete([request])[0]
