"""The compiler's side of the repair loop: replace or drop the plan step that failed.

A compiled script marks each step on stderr (`[stage] features:text @3.1s`); with the sandbox's status and
traceback that says which step failed. `repair_plan` then changes exactly that step — drops a feature step,
falls back to a simpler model family, simplifies preprocessing, loosens validation, or cuts cost after a timeout —
and records the round in `plan.history`. It returns None when nothing is left to change (the caller stops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from src.pipeline.code.compiler import catalog
from src.pipeline.code.compiler.plan import Plan, base_plan, finalize

STAGE_RE = re.compile(r"^\[stage\] (\S+)", re.MULTILINE)


@dataclass
class Failure:
    """What went wrong, as far as the plan is concerned."""

    status: str  # error | timeout | memory | killed | invalid
    stage: str | None  # the last step the script announced
    error: str  # last line of the traceback (or the sandbox's message)
    traceback: str


def diagnose(result: Any) -> Failure:
    """A Failure from an ExecutionResult (or anything with its fields), its dict, or a bare traceback string."""
    if isinstance(result, str):
        fields: dict[str, Any] = {"status": "error", "traceback": result, "stderr_tail": result}
    elif isinstance(result, dict):
        fields = result
    else:
        names = ("status", "traceback", "stderr_tail", "stdout_tail", "message", "reason")
        fields = {name: getattr(result, name, None) for name in names}
    status = str(fields.get("status") or "error")
    trace = str(fields.get("traceback") or "")
    streams = f"{fields.get('stdout_tail') or ''}\n{fields.get('stderr_tail') or ''}\n{trace}"
    stages = STAGE_RE.findall(streams)
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    error = lines[-1] if lines else str(fields.get("message") or fields.get("reason") or status)
    if "MemoryError" in error or "Unable to allocate" in error:
        status = "memory"
    return Failure(status=status, stage=stages[-1] if stages else None, error=error[:500], traceback=trace)


def _facts(plan: Plan, facts: dict[str, Any] | None) -> dict[str, Any]:
    return facts or {"data_type": plan.data_type, "task_type": plan.task_type, "metric": plan.metric}


def _done(plan: Plan) -> set[str]:
    return {h["action"] for h in plan.history}


# --------------------------------------------------------------------------- actions (each: plan -> description)


def _drop_datetime(plan: Plan) -> str | None:
    if not plan.preprocessing.datetime_features:
        return None
    plan.preprocessing.datetime_features = False
    return "drop the datetime feature step"


def _drop_embeddings(plan: Plan) -> str | None:
    text = plan.preprocessing.text
    if text.representation == "tfidf":
        return None
    text.representation = "tfidf"
    return "drop the sentence embeddings: TF-IDF only"


def _drop_compound(plan: Plan) -> str | None:
    if not plan.preprocessing.split_compound:
        return None
    plan.preprocessing.split_compound = False
    return "drop the compound-column split step"


def _fix_text(plan: Plan) -> str | None:
    text = plan.preprocessing.text
    if not text.enabled:
        return None
    if plan.data_type != "text":
        text.enabled = False
        return "drop the text feature step"
    if text.min_df > 1 or text.analyzers != ["char_wb"]:
        # the usual text failure is an empty vocabulary: count every token, and characters rather than words
        text.min_df, text.analyzers = 1, ["char_wb"]
        return "text features: character n-grams only, min_df=1"
    if text.keep_other_columns:
        text.keep_other_columns = False
        return "text features only (drop the other columns)"
    return None


def _simplify_preprocessing(plan: Plan) -> str | None:
    pre = plan.preprocessing
    simple = {"impute_numeric": "median", "categorical_encoding": "ordinal", "scaling": "auto"}
    if all(getattr(pre, key) == value for key, value in simple.items()):
        return None
    for key, value in simple.items():
        setattr(pre, key, value)
    return "simplify preprocessing: median imputation, ordinal encoding"


def _replace_model(plan: Plan, name: str | None) -> str | None:
    """Drop the failing model of an ensemble, or fall back to the catalog's simpler family."""
    index = next((i for i, m in enumerate(plan.models) if m.family == name), 0)
    failing = plan.models[index].family
    if len(plan.models) > 1:
        del plan.models[index]
        return f"drop model {failing} from the ensemble"
    simpler = catalog.model_spec(failing).get("simpler")
    if not simpler:
        return None
    plan.models[index].family = simpler
    plan.models[index].params = {}
    return f"model {failing} failed: fall back to {simpler}"


def _loosen_validation(plan: Plan) -> str | None:
    val = plan.validation
    if val.scheme in ("stratified", "holdout", "timeseries") or val.n_splits > 3:
        val.scheme, val.n_splits = "kfold", min(val.n_splits, 3)
        plan.ensemble = "fold_average"
        return "validation: plain 3-fold"
    return None


def _cut_cost(plan: Plan) -> str | None:
    """Roughly halve the run time: fewer models, folds, rounds, rows and TF-IDF columns."""
    changes = []
    if len(plan.models) > 1:
        changes.append(f"keep only {plan.models[0].family}")
        plan.models = plan.models[:1]
    val = plan.validation
    if val.n_splits > 3:
        val.n_splits = 3
        changes.append("3 folds")
    val.time_budget_s = max(5.0, val.time_budget_s * 0.6)
    for model in plan.models:
        for key in ("n_estimators", "max_iter"):
            if isinstance(model.params.get(key), int | float) and model.params[key] > 20:
                model.params[key] = int(model.params[key]) // 2
                changes.append(f"{model.family}.{key}={model.params[key]}")
    text = plan.preprocessing.text
    if text.enabled:
        if "char_wb" in text.analyzers and len(text.analyzers) > 1:
            text.analyzers = [a for a in text.analyzers if a != "char_wb"]
            changes.append("no character n-grams")
        if text.max_features > 5000:
            text.max_features //= 2
            changes.append(f"TF-IDF max_features={text.max_features}")
    if val.max_train_rows > 2000:
        val.max_train_rows = max(2000, val.max_train_rows // 2)
        changes.append(f"at most {val.max_train_rows} training rows")
    return f"cut cost ({', '.join(changes)})" if changes else None


def _fast_family(plan: Plan) -> str | None:
    fast = "linear" if plan.preprocessing.text.enabled else "lightgbm"
    if [m.family for m in plan.models] == [fast] and plan.models[0].params.get("n_estimators", 0) <= 100:
        return None
    plan.models = plan.models[:1]
    plan.models[0].family = fast
    plan.models[0].params = {"n_estimators": 100} if fast == "lightgbm" else {}
    return f"switch to a fast model: {fast}"


def _to_default(plan: Plan, facts: dict[str, Any]) -> str | None:
    if plan.source == "default" and not plan.history:
        return None
    default = base_plan(facts, plan.seed)
    for name in ("models", "preprocessing", "validation", "training", "ensemble"):
        setattr(plan, name, getattr(default, name))
    return "fall back to the default plan for the data type"


# --------------------------------------------------------------------------- repair


def _candidates(plan: Plan, failure: Failure, facts: dict[str, Any]) -> list[Any]:
    """Actions to try for this failure, most specific first (each a callable plan -> description | None)."""
    stage = failure.stage or ""
    head, _, name = stage.partition(":")
    if failure.status in ("timeout", "memory", "killed"):
        steps: list[Any] = [_cut_cost, _cut_cost, _fast_family, _cut_cost]
        if head == "features" and name == "datetime":
            steps.insert(0, _drop_datetime)
        if head == "features" and name == "compound":
            steps.insert(0, _drop_compound)
        if head == "features" and name == "embeddings":
            steps.insert(0, _drop_embeddings)
        return steps
    by_stage: dict[str, list[Any]] = {
        "features": {
            "datetime": [_drop_datetime],
            "compound": [_drop_compound],
            "text": [_fix_text, _fix_text],
            "embeddings": [_drop_embeddings],
        }.get(name, [_drop_datetime, _drop_compound, _simplify_preprocessing]),
        "preprocess": [_simplify_preprocessing, _drop_compound, _drop_datetime],
        "fit": [lambda p: _replace_model(p, name)],
        "predict": [lambda p: _replace_model(p, name)],
        "cv": [_loosen_validation, _simplify_preprocessing],
    }
    steps = list(by_stage.get(head, []))
    steps.append(lambda p: _to_default(p, facts))
    return steps


def repair_plan(plan: Plan, failure: Any, facts: dict[str, Any] | None = None) -> Plan | None:
    """A new plan that changes the step which failed (None when nothing is left to try).

    failure: the sandbox's ExecutionResult (or its dict, or a traceback string). facts: the task's public facts
    (defaults to those the plan carries). The input plan is not modified.
    """
    diag = diagnose(failure)
    task_facts = _facts(plan, facts)
    tried = _done(plan)
    for action in _candidates(plan, diag, task_facts):
        candidate = plan.copy()
        description = action(candidate)
        if description is None or description in tried:
            continue
        candidate.history.append(
            {
                "round": len(plan.history) + 1,
                "status": diag.status,
                "stage": diag.stage,
                "error": diag.error,
                "action": description,
            }
        )
        return finalize(candidate, task_facts)
    return None
