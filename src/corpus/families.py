"""Coarse model families named by instructions, and the corpus's most popular family per data type x metric.

The rules are data (families.yaml beside this file): per family, `strong` patterns (a specific model) and `weak`
ones (a generic neural-network word). `family_of` reads the Model architecture section first, then the whole text.

    family_of("Model architecture:\\n- LightGBM with 500 trees")     # "gbdt"
    majority_family(rows, "tabular", "auc")                         # the paper's Figure 2 cell, e.g. "gbdt"
    family_table(rows)                                              # Figure 2: data type x metric -> family
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from src.corpus.filters import data_type_components
from src.corpus.instruction import parse_instruction
from src.errors import PipesynthError

RULES_PATH = Path(__file__).resolve().with_name("families.yaml")


@lru_cache(maxsize=4)
def load_rules(path: str | Path = RULES_PATH) -> dict[str, dict[str, object]]:
    """family -> {phrase, strong: compiled regex | None, weak: compiled regex | None} from the YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())["families"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise PipesynthError(
            f"cannot read the model-family rules '{path}' ({err})",
            "restore src/corpus/families.yaml (a `families:` mapping of family -> strong/weak patterns)",
        ) from None
    rules: dict[str, dict[str, object]] = {}
    for family, entry in raw.items():
        compiled = {}
        for kind in ("strong", "weak"):
            patterns = list(entry.get(kind) or [])
            compiled[kind] = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        rules[str(family)] = {"phrase": entry.get("phrase", family), **compiled}
    return rules


def families() -> tuple[str, ...]:
    """Every family name the rules know."""
    return tuple(load_rules())


def family_phrase(family: str) -> str:
    """How an instruction names the family ("gbdt" -> "gradient-boosted decision trees (LightGBM)")."""
    rules = load_rules()
    if family not in rules:
        raise PipesynthError(f"unknown model family '{family}'", f"use one of {list(rules)}")
    return str(rules[family]["phrase"])


def _first_family(text: str, kind: str) -> str | None:
    """The family whose `kind` pattern matches earliest in `text` (ties: the YAML order)."""
    best: tuple[int, str] | None = None
    for family, rule in load_rules().items():
        pattern = rule[kind]
        match = pattern.search(text) if pattern is not None else None  # type: ignore[union-attr]
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), family)
    return best[1] if best else None


def family_of(text: str | None) -> str | None:
    """The canonical coarse family an instruction names (None when it names none).

    Strong patterns in the architecture section, then strong in the whole text, then weak likewise.
    """
    if not text or not text.strip():
        return None
    whole = text.lower()
    architecture = (parse_instruction(text).architecture or "").lower()
    for kind in ("strong", "weak"):
        for scope in (architecture, whole):
            family = _first_family(scope, kind) if scope else None
            if family:
                return family
    return None


def _component_key(data_type: str) -> tuple[str, ...]:
    return tuple(sorted(data_type_components(data_type)))


def _rows_frame(rows: pd.DataFrame | Iterable[dict]) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = {"competition", "data_type", "metric_category", "rank", "instruction"} - set(frame.columns)
    if missing:
        raise PipesynthError(
            f"corpus rows lack column(s) {sorted(missing)}",
            "pass rows from src.corpus.linguacodus.load_linguacodus(...).to_pandas() (or a built corpus split)",
        )
    return frame


def best_ranked(rows: pd.DataFrame, top: int | None = 1) -> pd.DataFrame:
    """The `top` best-ranked rows of every competition (all rows when top is None), with a `family` column."""
    frame = _rows_frame(rows).sort_values(["competition", "rank"], kind="stable")
    if top is not None:
        frame = frame.groupby("competition", sort=False).head(top)
    frame = frame.copy()
    if "family" not in frame.columns:
        frame["family"] = [family_of(t) for t in frame["instruction"]]
    return frame


def _majority(families_: Iterable[str | None]) -> tuple[str, int, int] | None:
    """(most common family, its count, how many named a family); ties broken by name for determinism."""
    counts = Counter(f for f in families_ if isinstance(f, str) and f)
    if not counts:
        return None
    family, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return family, count, sum(counts.values())


def majority_family(
    rows: pd.DataFrame,
    data_type: str,
    metric_category: str,
    top: int | None = 1,
    exclude_competitions: Iterable[str] = (),
) -> str | None:
    """The most popular family among the `top`-ranked instructions for data type x metric (Figure 2's cell).

    Falls back to the data type alone when the cell names no family, then to the primary data-type component
    ("tabular" for "tabular data_time series"); None when even that is empty.
    """
    frame = best_ranked(rows, top)
    excluded = set(exclude_competitions)
    if excluded:
        frame = frame[~frame["competition"].isin(excluded)]
    key = _component_key(data_type)
    keys = frame["data_type"].map(_component_key)
    primary = data_type_components(data_type)[:1]
    scopes = (
        (keys == key) & (frame["metric_category"] == metric_category),
        keys == key,
        keys.map(lambda k: bool(set(k) & set(primary))),
    )
    for mask in scopes:
        found = _majority(frame.loc[mask, "family"])
        if found:
            return found[0]
    return None


def family_table(rows: pd.DataFrame, top: int | None = 1) -> pd.DataFrame:
    """The paper's Figure 2: per data type x metric category, the most popular family, its count and share.

    Columns: data_type, metric_category, family, count (instructions naming it), named (instructions naming any
    family), share (count / named), competitions (distinct competitions in the cell).
    """
    frame = best_ranked(rows, top)
    frame = frame.assign(data_type=frame["data_type"].map(lambda t: "+".join(_component_key(t))))
    records = []
    for (data_type, metric), cell in frame.groupby(["data_type", "metric_category"], sort=True):
        found = _majority(cell["family"])
        family, count, named = found if found else (None, 0, 0)
        records.append(
            {
                "data_type": data_type,
                "metric_category": metric,
                "family": family,
                "count": count,
                "named": named,
                "share": count / named if named else 0.0,
                "competitions": cell["competition"].nunique(),
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=["data_type", "metric_category", "family", "count", "named", "share", "competitions"],
    )
