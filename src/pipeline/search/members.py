"""Which search nodes a blend combines: the best node of each kind of solution first, over the best node's rows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from src.pipeline.journal import Node

log = logging.getLogger(__name__)


def signature(node: Node) -> tuple[Any, ...]:
    """What makes two nodes' predictions differ most: model families and the features' representation."""
    plan = node.plan or {}
    pre = plan.get("preprocessing") or {}
    text = pre.get("text") or {}
    return (
        tuple(sorted(m.get("family", "") for m in plan.get("models") or [])) or (node.id,),
        (
            tuple(text.get("analyzers") or ()),
            text.get("representation", "tfidf"),
            text.get("weighting", "tfidf"),
        )
        if text.get("enabled")
        else (),
        pre.get("categorical_encoding"),
        pre.get("log_target"),
    )


def blend_candidates(ranked: list[Node], outputs: dict[str, Path], size: int) -> list[Node]:
    """Up to `size` nodes for a blend, best first: the best node of each kind of solution (families, feature
    representation) before the runners-up of a kind already in, since members that err differently blend best;
    nodes with equal scores (nearly always the same predictions) count once."""
    pool, scores = [], set()
    for node in ranked:
        key = round(float(node.validation_score), 12)  # type: ignore[arg-type]
        if key not in scores and node.id in outputs and node.code:
            scores.add(key)
            pool.append(node)
    firsts, seen = [], set()
    for node in pool:
        if signature(node) not in seen:
            seen.add(signature(node))
            firsts.append(node)
    first_ids = {n.id for n in firsts}
    chosen = {n.id for n in (firsts + [n for n in pool if n.id not in first_ids])[:size]}
    return [n for n in pool if n.id in chosen]


def same_rows_as_best(members: list[Any], oof_paths: list[Path]) -> list[Any]:
    """The members (best first) whose out-of-fold file covers the same train rows as the first one's.

    Row caps differ between model families (catalog `max_rows`), so on a large task some nodes predict a subsample
    of the rows: blending only the nodes over the best node's rows keeps a blend possible there, and its score
    comparable with the best node's (the same rows)."""
    if not members:
        return []
    keys = [
        frozenset(pd.read_csv(path, dtype=str, usecols=[0], keep_default_na=False).iloc[:, 0])
        for path in oof_paths
    ]
    return [member for member, key in zip(members, keys, strict=True) if key == keys[0]]
