"""Filters: metric categories, data types, completeness, prompt length, dedup, top-k; their order and errors."""

from __future__ import annotations

import pytest
from datasets import Dataset

from src.corpus.filters import (
    apply_filters,
    data_type_components,
    dedup_instructions,
    keep_data_types,
    top_k_per_competition,
)
from src.corpus.metric_categories import load_metric_categories
from src.errors import PipesynthError

CATS = load_metric_categories()


def rows() -> Dataset:
    data = [
        # competition, kernel, data_type, metric, rank, instruction, complete, prompt
        ("a", "1", "tabular data", "auc", 1, "A one", True, "p" * 10),
        ("a", "2", "tabular data", "auc", 2, "A  one", True, "p" * 10),  # same text as kernel 1 (whitespace)
        ("a", "3", "tabular data", "auc", 3, "A three", False, "p" * 50),
        ("a", "4", "tabular data", "auc", 4, "A four", True, "p" * 10),
        ("b", "5", "image data", "mse", 2, "B five", True, "p" * 10),
        ("b", "6", "image data", "mse", 1, "B six", True, "p" * 10),
        ("c", "7", "tabular data_time series", "points", 1, "C seven", True, "p" * 10),
        ("d", "8", "time series", "mae", 1, "A one", True, "p" * 10),  # same text as kernel 1, also rank 1
    ]
    keys = [
        "competition",
        "kernel_id",
        "data_type",
        "metric_category",
        "rank",
        "instruction",
        "is_complete",
        "prompt",
    ]
    return Dataset.from_dict({k: [r[i] for r in data] for i, k in enumerate(keys)})


def test_data_type_components() -> None:
    assert data_type_components("tabular data_time series") == ("tabular", "time_series")
    assert data_type_components("tabular data_text data_image data") == ("tabular", "text", "image")
    assert data_type_components("time_series") == ("time_series",)
    assert data_type_components("Image") == ("image",)
    assert data_type_components("tabular+text") == ("tabular", "text")


def test_keep_data_types_matches_any_component() -> None:
    kept = keep_data_types(rows(), ["time_series"])
    assert kept["kernel_id"] == ["7", "8"]
    assert keep_data_types(rows(), ["image data"])["kernel_id"] == ["5", "6"]
    with pytest.raises(PipesynthError, match=r"unknown data type\(s\) \['tables'\]"):
        keep_data_types(rows(), ["tables"])


def test_dedup_keeps_the_best_ranked_copy() -> None:
    out = dedup_instructions(rows())
    # kernels 1, 2 and 8 share "A one": 1 and 8 both have rank 1; (competition, kernel) breaks the tie -> 1
    assert out["kernel_id"] == ["1", "3", "4", "5", "6", "7"]


def test_top_k_keeps_best_ranks_per_competition() -> None:
    out = top_k_per_competition(rows(), 2)
    assert out["kernel_id"] == ["1", "2", "5", "6", "7", "8"]
    with pytest.raises(PipesynthError, match="top_k=0"):
        top_k_per_competition(rows(), 0)


def test_apply_filters_in_order_with_a_step_per_filter() -> None:
    cfg = {
        "exclude_metric_categories": ["points", "significance", "custom_loss"],
        "data_types": ["tabular", "image"],
        "require_complete": True,
        "max_prompt_chars": 20,
        "dedup": True,
        "top_k": 1,
    }
    out, steps = apply_filters(rows(), cfg, CATS)
    assert [(s.name, s.before, s.after) for s in steps] == [
        ("exclude_metric_categories", 8, 7),
        ("data_types", 7, 6),
        ("require_complete", 6, 5),
        ("max_prompt_length", 5, 5),
        ("dedup", 5, 4),
        ("top_k", 4, 2),
    ]
    assert out["kernel_id"] == ["1", "6"]


def test_top_k_counts_usable_rows_after_dedup_and_length() -> None:
    # kernel 2 duplicates 1 and kernel 3 is too long: top-2 of "a" are then kernels 1 and 4
    out, _ = apply_filters(rows(), {"max_prompt_chars": 20, "dedup": True, "top_k": 2}, CATS)
    assert [k for k, c in zip(out["kernel_id"], out["competition"], strict=True) if c == "a"] == ["1", "4"]


def test_token_length_filter_uses_the_given_counter() -> None:
    out, _ = apply_filters(rows(), {"max_prompt_tokens": 3}, CATS, count_tokens=lambda p: len(p) // 10)
    assert "3" not in out["kernel_id"] and len(out) == 7
    with pytest.raises(PipesynthError, match="no tokenizer") as err:
        apply_filters(rows(), {"max_prompt_tokens": 3}, CATS)
    assert "max_prompt_chars" in str(err.value)


def test_unknown_excluded_category_is_a_clear_error() -> None:
    with pytest.raises(PipesynthError, match="unknown metric category 'custom loss'") as err:
        apply_filters(rows(), {"exclude_metric_categories": ["custom loss"]}, CATS)
    assert "data.filters.exclude_metric_categories" in str(err.value)


def test_paper_exclusions_are_real_categories() -> None:
    CATS.require(["points", "significance", "custom_loss"], "the paper's exclusions")
