"""Built-in solution `baseline_gbdt`: the compiler's fixed default plan for the task's data type.

LightGBM (5-fold, early stopping, fold-averaged) for tabular and time-series data, TF-IDF word + character
n-grams with a linear model for text. Used by `solution=baseline_gbdt` (src.solutions.CompilerBaseline).
"""

from __future__ import annotations

from typing import Any

from src.pipeline.code.compiler.plan import default_plan
from src.pipeline.code.compiler.render import render_script


def render_baseline_gbdt(task_public_facts: dict[str, Any], seed: int = 0) -> str:
    """The baseline_gbdt script for a task, from its public task.json facts."""
    return render_script(default_plan(task_public_facts, seed=seed), task_public_facts)
