"""Which columns of a table hold text a row may relate to another (is phrase A like phrase B?).

Defined once here: the compiled script embeds this function's source (templates/step_text_pairs.py.tmpl, via
src.pipeline.code.compiler.render), and the search calls it to propose pair-only moves on tasks that have pairs.
"""

from __future__ import annotations

import pandas as pd

MAX_PAIR_COLUMNS = 4  # at most 6 pairs


def pair_text_columns(data: pd.DataFrame, text_columns: list[str], max_categories: int) -> list[str]:
    """Free-text columns plus short-phrase columns (more distinct values than `max_categories`, often several
    words): the columns a row may relate to each other. Detected from the values, never from names."""
    found = list(text_columns)
    for col in data.columns:
        values = data[col]
        if col in found or pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        present = values.dropna().astype(str)
        if present.nunique() <= max_categories or not len(present):
            continue
        words = present.str.split().str.len()
        lettered = present.str.contains(r"[A-Za-z]{2}", regex=True).mean()
        if lettered >= 0.9 and (words >= 2).mean() >= 0.3:
            found.append(col)
    return found[:MAX_PAIR_COLUMNS]
