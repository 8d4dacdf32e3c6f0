"""Client for any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama) via the `openai` package.

Chat requests go to /chat/completions, raw prompts to /completions. The SDK's own retries are off
(`max_retries=0`): our bounded loop retries 408/409/429/5xx and timeouts with exponential backoff, honours
`retry-after-ms` / `retry-after`, and logs every retry. A server that cannot be reached, a rejected key or an
unknown model each become one PipesynthError naming the server and the fix.

An answer prefix (`ChatRequest.prefix`): a raw prompt gets it appended (exact). A chat request gets it as a
final assistant message with `continue_final_message` (vLLM; llama.cpp's server continues a trailing assistant
message by itself) when `prefix_mode=continue`; `prefix_mode=error` (the default for api.openai.com, which
has no such feature) refuses prefixed chat requests with a clear message instead of ignoring the prefix.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from src.errors import PipesynthError
from src.llm.base import ChatRequest, Choice, Completion, SamplingParams

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429}  # plus every 5xx
OPENAI_API = "https://api.openai.com/v1"
PREFIX_MODES = ("auto", "continue", "error")
DUMMY_KEY = "sk-no-key-needed"  # local servers accept any key, the SDK insists on one


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, then retry-after (seconds or an HTTP date)."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


class OpenAIClient:
    """One OpenAI-compatible endpoint. Requests of a batch run concurrently (`concurrency` threads)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.7,
        max_tokens: int = 1024,
        top_p: float = 1.0,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff: Mapping[str, float] | None = None,
        concurrency: int = 4,
        prefix_mode: str = "auto",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.model_id = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_API).rstrip("/")
        key = api_key or os.environ.get(api_key_env)
        if not key:
            if self.base_url.startswith(OPENAI_API):
                raise PipesynthError(
                    f"no API key for {self.base_url}: ${api_key_env} is not set",
                    f"export {api_key_env}=<your key>, or point llm.base_url at a local server, or use llm=local",
                )
            key = DUMMY_KEY
        self.defaults = SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            n=1,
            seed=seed,
            stop=tuple(stop or ()),
        )
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        backoff = dict(backoff or {})
        self.backoff_initial_s = float(backoff.get("initial_s", 1.0))
        self.backoff_factor = float(backoff.get("factor", 2.0))
        self.backoff_max_s = float(backoff.get("max_s", 30.0))
        self.backoff_jitter = float(backoff.get("jitter", 0.1))
        self.max_retry_after_s = float(backoff.get("max_retry_after_s", 120.0))
        self.concurrency = max(1, int(concurrency))
        if prefix_mode not in PREFIX_MODES:
            raise PipesynthError(
                f"unknown llm.prefix_mode {prefix_mode!r}", f"use one of {', '.join(PREFIX_MODES)}"
            )
        if prefix_mode == "auto":  # the OpenAI API cannot continue an assistant message; local servers can
            prefix_mode = "error" if self.base_url.startswith(OPENAI_API) else "continue"
        self.prefix_mode = prefix_mode
        self._sleep = sleep
        self._sdk = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0)

    # ------------------------------------------------------------------ public
    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        resolved = [r.resolved(self.defaults) for r in requests]
        for r in resolved:
            if r.prefix and r.kind == "chat" and self.prefix_mode == "error":
                raise PipesynthError(
                    f"the LLM server at {self.base_url} cannot continue an answer prefix "
                    f"({r.describe(60)} starts its answer with {r.prefix[:40]!r})",
                    "use llm.prefix_mode=continue for a server that continues a final assistant message "
                    "(vLLM, llama.cpp server), or sampling=free decide=model, or a raw-prompt template",
                )
        if len(resolved) <= 1 or self.concurrency == 1:
            return [self._complete_one(r) for r in resolved]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(resolved))) as pool:
            return list(pool.map(self._complete_one, resolved))

    # ----------------------------------------------------------------- helpers
    def _delay(self, retry: int, headers: Mapping[str, str] | None) -> float:
        asked = _retry_after_s(headers)
        if asked is not None:
            return min(asked, self.max_retry_after_s)
        delay = min(self.backoff_initial_s * self.backoff_factor**retry, self.backoff_max_s)
        return delay * (1 + self.backoff_jitter * random.random())

    def _send(self, r: ChatRequest) -> Any:
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": r.temperature,
            "max_tokens": r.max_tokens,
            "top_p": r.top_p,
            "n": r.n,
        }
        if r.seed is not None:
            params["seed"] = r.seed
        if r.stop:
            params["stop"] = list(r.stop)
        if r.kind == "chat":
            messages = [dict(m) for m in r.messages or ()]
            if r.prefix:
                messages.append({"role": "assistant", "content": r.prefix})
                # vLLM's names; llama.cpp's server continues a trailing assistant message without them
                params["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
            return self._sdk.chat.completions.create(messages=messages, **params)
        return self._sdk.completions.create(prompt=r.prompt + (r.prefix or ""), **params)

    def _complete_one(self, r: ChatRequest) -> Completion:
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                response = self._send(r)
            except openai.APITimeoutError as err:
                reason, headers, last = f"timed out after {self.timeout_s:g}s", None, err
            except openai.APIConnectionError as err:
                cause = err.__cause__
                if type(cause).__name__ == "ConnectError" or cause is None:
                    raise self._unreachable(cause or err) from None
                reason, headers, last = f"connection dropped ({type(cause).__name__})", None, err
            except openai.APIStatusError as err:
                status = err.status_code
                if status not in RETRY_STATUS and status < 500:
                    raise self._rejected(err, r) from None
                reason, headers, last = f"HTTP {status}", err.response.headers, err
            else:
                return self._parse(response, r, attempt + 1, time.perf_counter() - start)
            if attempt == self.max_retries:
                break
            delay = self._delay(attempt, headers)
            log.warning(
                "LLM server %s: %s on %s; retry %d/%d in %.2fs",
                self.base_url,
                reason,
                r.describe(60),
                attempt + 1,
                self.max_retries,
                delay,
            )
            self._sleep(delay)
        raise PipesynthError(
            f"the LLM server at {self.base_url} kept failing ({reason}) for {r.describe(60)} after "
            f"{self.max_retries + 1} attempts: {_server_message(last)}",
            "check the server's logs and load; raise llm.max_retries or llm.timeout_s, or lower llm.concurrency",
        )

    def _parse(self, response: Any, r: ChatRequest, attempts: int, latency: float) -> Completion:
        choices = sorted(response.choices or [], key=lambda c: c.index or 0)
        if not choices:
            raise PipesynthError(
                f"the LLM server at {self.base_url} returned no choices for {r.describe(60)}",
                "check that the server supports this endpoint and model",
            )
        out = []
        for c in choices:
            text = (c.message.content if r.kind == "chat" else c.text) or ""
            out.append(Choice(text=text, finish_reason=c.finish_reason or "stop"))
        usage = response.usage
        return Completion(
            choices=out,
            model=response.model or self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=attempts,
            latency_s=latency,
        )

    def _unreachable(self, cause: BaseException) -> PipesynthError:
        return PipesynthError(
            f"cannot reach the LLM server at {self.base_url} ({type(cause).__name__}: {cause})",
            "start an OpenAI-compatible server there (vLLM, llama.cpp server, Ollama), or set "
            "llm.base_url=<url> (or $OPENAI_BASE_URL), or run offline with llm=local",
        )

    def _rejected(self, err: openai.APIStatusError, r: ChatRequest) -> PipesynthError:
        status = err.status_code
        fixes = {
            401: "set a valid key in the environment variable named by llm.api_key_env",
            403: "check the key's permissions for this model",
            404: f"check llm.model={self.model!r} is served at llm.base_url={self.base_url}",
        }
        return PipesynthError(
            f"the LLM server at {self.base_url} rejected {r.describe(60)} with HTTP {status}: "
            f"{_server_message(err)}",
            fixes.get(status, "check llm.model and the sampling settings (llm.max_tokens, llm.temperature)"),
        )


def _server_message(err: BaseException) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        return str(inner)[:300]
    return str(err)[:300]
