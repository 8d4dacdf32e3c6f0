"""A deterministic client for tests and dry runs: queued replies, or replies computed from the request.

It records every request it receives, so a test can check what the pipeline asked and in which order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from hydra.utils import get_method

from src.errors import PipesynthError
from src.llm.base import ChatRequest, Choice, Completion, SamplingParams

ReplyFn = Callable[[ChatRequest], str]


def request_text(request: ChatRequest) -> str:
    """The prompt, or every message's content joined by blank lines (what a reply rule matches on)."""
    if request.prompt is not None:
        return request.prompt
    return "\n\n".join(m["content"] for m in request.messages or ())


class ScriptedClient:
    """Replies come from `replies` (in order), then `reply_fn(request)`, then `default_reply`.

    `reply_fn` may be a callable or a dotted path ("package.module.function"), so configs can name one.
    Token counts are whitespace word counts, enough to exercise usage accounting.
    """

    def __init__(
        self,
        replies: Sequence[str] | None = None,
        reply_fn: ReplyFn | str | None = None,
        default_reply: str | None = None,
        model: str = "scripted",
        temperature: float = 0.7,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        self.queue: deque[str] = deque(replies or ())
        self.reply_fn: ReplyFn | None = get_method(reply_fn) if isinstance(reply_fn, str) else reply_fn
        self.default_reply = default_reply
        self.model_id = model
        self.defaults = SamplingParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed)
        self.requests: list[ChatRequest] = []

    def push(self, *replies: str) -> None:
        """Queue more replies."""
        self.queue.extend(replies)

    def _reply(self, request: ChatRequest) -> str:
        if self.queue:
            return self.queue.popleft()
        if self.reply_fn is not None:
            return self.reply_fn(request)
        if self.default_reply is not None:
            return self.default_reply
        raise PipesynthError(
            f"the scripted LLM ran out of replies at request {len(self.requests)}: {request.describe()}",
            "queue more replies (llm.replies / ScriptedClient.push), or set llm.reply_fn or llm.default_reply",
        )

    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            request = request.resolved(self.defaults)
            self.requests.append(request)
            choices = []
            for _ in range(request.n or 1):
                text = self._reply(request)
                for stop in request.stop or ():  # mimic servers: cut at the first stop string
                    text = text.split(stop, 1)[0]
                choices.append(Choice(text=text, finish_reason="stop"))
            out.append(
                Completion(
                    choices=choices,
                    model=self.model_id,
                    prompt_tokens=len(request_text(request).split()),
                    completion_tokens=sum(len(c.text.split()) for c in choices),
                )
            )
        return out
