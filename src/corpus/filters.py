"""Corpus filters configured by `cfg.data.filters`; each one logs how many rows it removed and why.

Order (each sees the output of the previous one): metric categories excluded -> data types kept -> complete
instructions only (optional) -> prompt length -> duplicate instructions -> top-k per competition. Top-k comes
last so that k counts usable solutions ("the top 75 solutions" of a competition, paper Section 3).

    data:
      filters:
        exclude_metric_categories: [points, significance, custom_loss]
        data_types: null          # or e.g. [tabular, text]: keep rows with ANY of these components
        require_complete: false   # drop instructions lacking preprocessing / architecture / training
        max_prompt_chars: null
        max_prompt_tokens: null   # needs a tokenizer (build_corpus(cfg, tokenizer=tok))
        dedup: true               # identical instruction text (whitespace-normalised): keep the best rank
        top_k: 75
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from datasets import Dataset

from src.corpus.metric_categories import MetricCategories
from src.errors import PipesynthError

log = logging.getLogger(__name__)

DATA_TYPES = ("tabular", "image", "text", "time_series", "audio", "video")
_TIME_SERIES = re.compile(r"time[\s_-]?series")


def data_type_components(value: str) -> tuple[str, ...]:
    """Canonical parts of a data type: "tabular data_time series" -> ("tabular", "time_series"), "image" -> ("image",)."""
    s = _TIME_SERIES.sub("timeseries", str(value).strip().lower())
    parts = []
    for raw in re.split(r"[_+,/]|\s+and\s+", s):
        part = raw.strip().removesuffix(" data").strip()
        part = "time_series" if part == "timeseries" else part
        if part and part not in parts:
            parts.append(part)
    return tuple(parts)


@dataclass(frozen=True)
class FilterStep:
    """One filter's effect: rows before and after, plus what it was configured with."""

    name: str
    before: int
    after: int
    detail: str = ""

    @property
    def removed(self) -> int:
        return self.before - self.after


def _keep(ds: Dataset, mask: list[bool]) -> Dataset:
    """Rows where mask is True, in order (select on an in-memory Dataset: no cache files, no progress bars)."""
    return ds.select([i for i, keep in enumerate(mask) if keep])


def exclude_metric_categories(ds: Dataset, excluded: list[str], categories: MetricCategories) -> Dataset:
    """Drop rows whose metric category is listed (each listed name must exist in the direction table)."""
    categories.require(excluded, "data.filters.exclude_metric_categories")
    drop = set(excluded)
    return _keep(ds, [c not in drop for c in ds["metric_category"]])


def keep_data_types(ds: Dataset, kept: list[str]) -> Dataset:
    """Keep rows having at least one of the `kept` data-type components (tabular, image, text, ...)."""
    wanted = {c for k in kept for c in data_type_components(k)}
    unknown = sorted(wanted - set(DATA_TYPES))
    if unknown:
        raise PipesynthError(
            f"unknown data type(s) {unknown} in data.filters.data_types",
            f"use any of {list(DATA_TYPES)}, or null for all",
        )
    return _keep(ds, [bool(wanted & set(data_type_components(t))) for t in ds["data_type"]])


def max_prompt_length(
    ds: Dataset,
    max_chars: int | None = None,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Dataset:
    """Drop rows whose rendered `prompt` is longer than `max_chars` characters or `max_tokens` tokens."""
    if max_tokens is not None and count_tokens is None:
        raise PipesynthError(
            "data.filters.max_prompt_tokens is set but no tokenizer was given to count tokens",
            "pass tokenizer= to build_corpus, or use data.filters.max_prompt_chars instead",
        )

    return _keep(
        ds,
        [
            (max_chars is None or len(p) <= max_chars)
            and (max_tokens is None or count_tokens(p) <= max_tokens)  # type: ignore[misc]
            for p in ds["prompt"]
        ],
    )


def _order(ds: Dataset) -> pd.DataFrame:
    """Row positions sorted best first: by competition, rank, then kernel id (deterministic ties)."""
    frame = pd.DataFrame(
        {"competition": list(ds["competition"]), "rank": list(ds["rank"]), "kernel_id": list(ds["kernel_id"])}
    ).reset_index(names="row")
    return frame.sort_values(["competition", "rank", "kernel_id"], kind="stable")


def dedup_instructions(ds: Dataset) -> Dataset:
    """Keep one row per identical instruction text (whitespace-normalised), the best-ranked one."""
    frame = _order(ds)
    texts = list(ds["instruction"])
    frame["key"] = [" ".join(texts[i].split()) for i in frame["row"]]
    frame = frame.sort_values("rank", kind="stable")  # stable: ties keep the (competition, kernel_id) order
    keep = frame.drop_duplicates("key")["row"]
    return ds.select(sorted(int(i) for i in keep))


def top_k_per_competition(ds: Dataset, k: int) -> Dataset:
    """Keep the k best-ranked rows of every competition."""
    if k < 1:
        raise PipesynthError(f"data.filters.top_k={k} keeps nothing", "use a positive k, or null for all")
    keep = _order(ds).groupby("competition", sort=False).head(k)["row"]
    return ds.select(sorted(int(i) for i in keep))


def apply_filters(
    ds: Dataset,
    cfg: Mapping[str, Any],
    categories: MetricCategories,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[Dataset, list[FilterStep]]:
    """Run the configured filters in order; returns the filtered rows and one FilterStep per active filter."""
    steps: list[FilterStep] = []

    def run(name: str, detail: Any, fn: Callable[[Dataset], Dataset]) -> None:
        nonlocal ds
        before = len(ds)
        ds = fn(ds)
        steps.append(FilterStep(name, before, len(ds), str(detail)))
        log.info("filter %-26s %s: %d -> %d rows", name, detail, before, len(ds))

    excluded = list(cfg.get("exclude_metric_categories") or [])
    if excluded:
        run(
            "exclude_metric_categories",
            excluded,
            lambda d: exclude_metric_categories(d, excluded, categories),
        )
    if cfg.get("data_types"):
        kept = list(cfg["data_types"])
        run("data_types", kept, lambda d: keep_data_types(d, kept))
    if cfg.get("require_complete"):
        if "is_complete" not in ds.column_names:
            raise PipesynthError(
                "data.filters.require_complete needs an `is_complete` column",
                "use a corpus source that parses sections",
            )
        run("require_complete", True, lambda d: _keep(d, list(d["is_complete"])))
    max_chars, max_tokens = cfg.get("max_prompt_chars"), cfg.get("max_prompt_tokens")
    if max_chars is not None or max_tokens is not None:
        run(
            "max_prompt_length",
            f"chars<={max_chars} tokens<={max_tokens}",
            lambda d: max_prompt_length(d, max_chars, max_tokens, count_tokens),
        )
    if cfg.get("dedup"):
        run("dedup", True, dedup_instructions)
    if cfg.get("top_k") is not None:
        k = int(cfg["top_k"])
        run("top_k", k, lambda d: top_k_per_competition(d, k))
    return ds, steps
