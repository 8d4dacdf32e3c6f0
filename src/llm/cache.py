"""On-disk response cache that wraps any client, so a run can be replayed offline and its cost counted.

Key: sha256 of (model id, messages or prompt, answer prefix, resolved sampling params incl. seed). One JSON file per key,
written to a temporary file and renamed into place, so concurrent writers (parallel tasks, two runs) never
leave a torn entry. Modes:

- `read_write` (default): answer from the cache when possible, call the model for the rest, store them.
- `replay`: answer only from the cache; a miss raises a PipesynthError naming the request. Never calls a model.
- `off`: always call the model, store nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from src.errors import PipesynthError
from src.llm.base import ChatRequest, Completion, LLMClient, PriceTable, SamplingParams, Usage

log = logging.getLogger(__name__)

MODES = ("read_write", "replay", "off")
KEY_VERSION = 1  # bump when the key's content changes, so old entries are not misread


def request_key(model_id: str, request: ChatRequest) -> str:
    """sha256 of what determines the answer: model, messages/prompt, sampling params (not the tag)."""
    payload = {
        "v": KEY_VERSION,
        "model": model_id,
        "messages": [dict(m) for m in request.messages] if request.messages is not None else None,
        "prompt": request.prompt,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "top_p": request.top_p,
        "n": request.n,
        "seed": request.seed,
        "stop": list(request.stop or ()),
    }
    if request.prefix is not None:  # added only when set, so entries without a prefix keep their keys
        payload["prefix"] = request.prefix
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A folder of `<key[:2]>/<key>.json` entries holding the request and its completion."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            return Completion.from_dict(entry["completion"])
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            # Renames are atomic, so this is a hand-edited or foreign file: treat it as a miss, say so.
            log.warning("ignoring unreadable cache entry %s (%s)", path, err)
            return None

    def put(self, key: str, request: ChatRequest, completion: Completion, model_id: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": key,
            "model_id": model_id,
            "request": asdict(request),
            "completion": completion.to_dict(),
            "stored_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False, indent=1)
            os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*/*.json")) if self.dir.is_dir() else 0


class CachedClient:
    """Wraps a client: resolves sampling defaults, answers from the cache, counts usage and cost.

    Build it with `src.llm.build_client(cfg.llm)`; every pipeline call goes through one of these.
    """

    def __init__(
        self,
        client: LLMClient,
        mode: str = "read_write",
        dir: str | Path | None = None,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        calls_log: str | Path | None = None,
    ) -> None:
        if mode not in MODES:
            raise PipesynthError(f"unknown llm.cache.mode {mode!r}", f"use one of {', '.join(MODES)}")
        if mode != "off" and dir is None:
            raise PipesynthError("llm.cache.dir is not set", "set llm.cache.dir or llm.cache.mode=off")
        self.client = client
        self.mode = mode
        self.cache = ResponseCache(dir) if dir is not None else None
        self.prices = PriceTable(prices)
        self.usage = Usage()
        # one JSON line per request (key, tag, cached, tokens, cost): which cache entries a run used
        self.calls_log = Path(calls_log) if calls_log else None
        self._log_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.client.model_id

    @property
    def defaults(self) -> SamplingParams:
        return self.client.defaults

    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        resolved = [r.resolved(self.defaults) for r in requests]
        model_id = self.model_id
        keys = [request_key(model_id, r) for r in resolved]
        results: list[Completion | None] = [None] * len(resolved)
        if self.mode != "off":
            assert self.cache is not None
            for i, key in enumerate(keys):
                hit = self.cache.get(key)
                if hit is not None:
                    hit.cached = True
                    results[i] = hit
        missing = [i for i, c in enumerate(results) if c is None]
        if missing and self.mode == "replay":
            first = resolved[missing[0]]
            raise PipesynthError(
                f"replay mode: {len(missing)} of {len(resolved)} LLM requests are not in the cache "
                f"{self.cache.dir if self.cache else None} (model {model_id!r}; first: {first.describe()}, "
                f"key {keys[missing[0]][:12]})",
                "point llm.cache.dir at the cache of the logged run, or run with llm.cache.mode=read_write "
                "(needs the model or server) to fill it",
            )
        if missing:
            fresh = self.client.complete([resolved[i] for i in missing])
            if len(fresh) != len(missing):
                raise RuntimeError(
                    f"{type(self.client).__name__} returned {len(fresh)} for {len(missing)} requests"
                )
            for i, completion in zip(missing, fresh, strict=True):
                completion.cached = False
                results[i] = completion
                if self.mode == "read_write":
                    assert self.cache is not None
                    self.cache.put(keys[i], resolved[i], completion, model_id)
        out: list[Completion] = []
        for request, completion in zip(resolved, results, strict=True):
            assert completion is not None
            cost = self.prices.cost(completion.model, completion.prompt_tokens, completion.completion_tokens)
            self.usage.record(request, completion, cost)
            out.append(completion)
        self._log_calls(resolved, keys, out)
        log.debug("llm: %d requests, %d from cache", len(resolved), len(resolved) - len(missing))
        return out

    def _log_calls(self, requests: list[ChatRequest], keys: list[str], completions: list[Completion]) -> None:
        if self.calls_log is None:
            return
        lines = [
            json.dumps(
                {
                    "key": key,
                    "tag": r.tag,
                    "model": c.model,
                    "cached": c.cached,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "attempts": c.attempts,
                    "latency_s": round(c.latency_s, 3),
                }
            )
            for r, key, c in zip(requests, keys, completions, strict=True)
        ]
        self.calls_log.parent.mkdir(parents=True, exist_ok=True)
        with self._log_lock, self.calls_log.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))

    def usage_dict(self) -> dict[str, Any]:
        return {"model": self.model_id, "cache_mode": self.mode, **self.usage.as_dict()}
