"""Fluent nonsense: the ablation's control text (conf/llm/nonsense.yaml, `llm.reply_fn`).

Every reply is a seeded string of everyday words that names no task, model, data step or number, so an
instruction made of it carries no information; the sampler's section headings stay (guided sampling writes
them). Deterministic per request (prompt, prefix, seed), like a sampled model at a fixed seed.
"""

from __future__ import annotations

import hashlib
import random

from src.llm.base import ChatRequest
from src.llm.scripted import request_text

WORDS = (
    "the a quiet river sang over seven yellow hills while old friends painted windows and bright kites "
    "drifted past a sleepy harbour where gentle bakers folded warm bread into paper boats under purple "
    "clouds then somebody hummed a song about lanterns gardens pockets umbrellas and soft blue mornings"
).split()
MAX_WORDS = 60  # a section body's length, about what the embedded model writes


def nonsense_text(key: str, words: int = MAX_WORDS) -> str:
    """`words` everyday words drawn by a generator seeded from `key`, as sentences."""
    rng = random.Random(hashlib.sha256(key.encode("utf-8")).hexdigest())
    out, sentence = [], []
    for _ in range(words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(6, 12):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


def nonsense_reply(request: ChatRequest) -> str:
    """A reply of nonsense for `request` (its length capped by max_tokens, one word a token)."""
    key = f"{request_text(request)}\x00{request.prefix or ''}\x00{request.seed}"
    return nonsense_text(key, min(MAX_WORDS, int(request.max_tokens or MAX_WORDS)))
