"""Hyperparameters an instruction states in its text ("learning rate of 0.05", "500 trees", "C=1.0").

The one reading shared by the compiler (src/pipeline/code/compiler/parse.py, which applies them to a plan) and the
corpus family vote (src/corpus/retrieval.py, which votes settings the compiler understands).
"""

from __future__ import annotations

import re
from typing import Any

# a number with at least one digit: 0.05, .5, 1e-3, 1,000
NUM = r"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?)"
SEP = r"\s*(?:=|:|of|to|is|set to|equal to|as|value of)?\s*"


def _n(*names: str) -> str:
    return r"(?:" + "|".join(names) + r")"


# (canonical parameter, patterns whose group 1 is the value); applied to every model, the catalog keeps the
# parameters each family has
PARAM_PATTERNS: list[tuple[str, list[str]]] = [
    (
        "n_estimators",
        [
            rf"\b{_n('n_estimators', 'num_boost_round', 'num_iterations', 'num_rounds', 'n_rounds', 'nrounds', 'number of (?:trees|estimators|boosting rounds|iterations)')}{SEP}{NUM}",
            rf"{NUM}\s+(?:decision trees|trees|estimators|boosting rounds|boosting iterations)\b",
        ],
    ),
    ("learning_rate", [rf"\b{_n('learning[_ ]rate', 'lr', 'eta')}{SEP}{NUM}"]),
    ("num_leaves", [rf"\b{_n('num_leaves', 'number of leaves', 'max_leaves')}{SEP}{NUM}"]),
    ("max_leaf_nodes", [rf"\b{_n('max_leaf_nodes', 'num_leaves')}{SEP}{NUM}"]),
    ("max_depth", [rf"\b{_n('max_depth', 'maximum depth', 'max depth', 'depth')}{SEP}{NUM}"]),
    ("min_child_samples", [rf"\b{_n('min_child_samples', 'min_data_in_leaf')}{SEP}{NUM}"]),
    ("min_samples_leaf", [rf"\b{_n('min_samples_leaf', 'min_data_in_leaf')}{SEP}{NUM}"]),
    ("subsample", [rf"\b{_n('subsample', 'bagging_fraction')}{SEP}{NUM}"]),
    ("colsample_bytree", [rf"\b{_n('colsample_bytree', 'feature_fraction')}{SEP}{NUM}"]),
    ("reg_alpha", [rf"\b{_n('reg_alpha', 'lambda_l1')}{SEP}{NUM}"]),
    ("reg_lambda", [rf"\b{_n('reg_lambda', 'lambda_l2')}{SEP}{NUM}"]),
    ("l2_regularization", [rf"\b{_n('l2_regularization', 'reg_lambda', 'lambda_l2')}{SEP}{NUM}"]),
    (
        "C",
        [
            rf"\bc\s*(?:=|:|of|value of|parameter of)\s*{NUM}",
            rf"regulari[sz]ation (?:parameter|strength) (?:\(?c\)? )?(?:of|=|:)?\s*{NUM}",
        ],
    ),
    ("alpha", [rf"\balpha{SEP}{NUM}"]),
    ("l1_ratio", [rf"\bl1_ratio{SEP}{NUM}"]),
    (
        "n_neighbors",
        [rf"\b{_n('n_neighbors', 'k')}\s*(?:=|:|of)\s*{NUM}", rf"\b{NUM}\s*(?:nearest )?neighbou?rs"],
    ),
    ("max_iter", [rf"\b{_n('max_iter', 'epochs', 'number of epochs')}{SEP}{NUM}", rf"\b{NUM}\s+epochs"]),
    ("batch_size", [rf"\bbatch[_ ]size{SEP}{NUM}"]),
    ("learning_rate_init", [rf"\b{_n('learning_rate_init', 'learning[_ ]rate', 'lr')}{SEP}{NUM}"]),
]
CHOICE_PATTERNS: list[tuple[str, str]] = [
    ("max_features", r"\bmax_features\s*=\s*['\"]?(sqrt|log2|[\d.]+)"),
    ("gamma", r"\bgamma\s*=\s*['\"]?(scale|auto)"),
    ("weights", r"\bweights\s*=\s*['\"]?(uniform|distance)"),
]


def compile_patterns(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def first_match(patterns: list[str], text: str) -> re.Match[str] | None:
    return compile_patterns(patterns).search(text) if patterns else None


def number(raw: str) -> float | None:
    raw = raw.replace(",", "")
    try:
        return float(raw)
    except ValueError:
        return None


def stated_params(text: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, patterns in PARAM_PATTERNS:
        match = first_match(patterns, text)
        if not match:
            continue
        raw = next((g for g in match.groups() if g), None)
        value = number(raw) if raw else None
        if value is None:
            continue
        params.setdefault(name, value)
    for name, pattern in CHOICE_PATTERNS:
        match = re.search(pattern, text)
        if match and name not in params:
            params[name] = number(match.group(1)) if number(match.group(1)) is not None else match.group(1)
    layers = re.search(r"hidden_layer_sizes\s*=\s*\(?\s*([\d,\s]+)\)?", text)
    if layers:
        params["hidden_layer_sizes"] = [int(v) for v in re.findall(r"\d+", layers.group(1))][:4]
    else:
        units = [int(v) for v in re.findall(r"\b(\d{1,4})\s+(?:units|neurons|nodes|hidden units)\b", text)]
        if units:
            params["hidden_layer_sizes"] = units[:4]
    return params
