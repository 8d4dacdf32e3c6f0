"""LLM clients behind one protocol, each wrapped in the on-disk response cache.

Usage (a composed config with `llm=local|openai|scripted`):

from src.llm import ChatRequest, build_client, user
llm = build_client(cfg.llm)                       # conf/llm/{local,openai,scripted}.yaml
[c] = llm.complete([ChatRequest(messages=user("Say hi"), temperature=0.2, tag="demo")])
print(c.text, c.finish_reason, c.cached)
print(llm.usage_dict())                           # requests, cache hits, tokens, cost_usd
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.llm.base import (
    ChatRequest,
    Choice,
    Completion,
    LLMClient,
    Message,
    PriceTable,
    SamplingParams,
    Usage,
    ask,
    user,
)
from src.llm.cache import CachedClient, ResponseCache, request_key

__all__ = [
    "CachedClient",
    "ChatRequest",
    "Choice",
    "Completion",
    "LLMClient",
    "Message",
    "PriceTable",
    "ResponseCache",
    "SamplingParams",
    "Usage",
    "ask",
    "build_client",
    "request_key",
    "user",
]

_WRAPPER_KEYS = ("cache", "prices")


def build_client(cfg: DictConfig | Mapping[str, Any]) -> CachedClient:
    """Instantiate `cfg` (an `llm` config: `_target_` plus the client's options) inside a CachedClient.

    `cfg.cache` ({mode, dir, calls_log}) and `cfg.prices` configure the wrapper; every other key goes to the
    client.
    """
    if isinstance(cfg, DictConfig):
        # resolve while still attached to the full config, so ${paths.cache_dir} and friends work
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
    assert isinstance(data, dict)
    cache = data.pop("cache", None) or {"mode": "off"}
    prices = data.pop("prices", None)
    client = instantiate(data)
    return CachedClient(
        client,
        mode=cache.get("mode", "read_write"),
        dir=cache.get("dir"),
        prices=prices,
        calls_log=cache.get("calls_log"),
    )
