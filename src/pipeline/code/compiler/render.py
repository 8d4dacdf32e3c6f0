"""Render a plan into one self-contained solution script from the templates in templates/*.py.tmpl.

The code text lives in the templates and in the catalog (catalog/*.yaml: model constructors, metric bodies,
preprocessing steps); this module only chooses pieces and fills `$placeholders` with Python literals.
The script imports only numpy, pandas, scipy, scikit-learn and LightGBM — never this package.
"""

from __future__ import annotations

import inspect
import textwrap
from string import Template
from typing import Any

from src.errors import PipesynthError
from src.pipeline.code.compiler import catalog, text_pairs
from src.pipeline.code.compiler.plan import (
    CLASSIFICATION,
    Plan,
    check_facts,
    effective_preprocessing,
    metric_spec,
)

INDENT = "    "


def output_kind(plan: Plan, facts: dict[str, Any]) -> str:
    """What the submission holds: label, proba_pos, proba_matrix (one column per class) or value."""
    if plan.task_type not in CLASSIFICATION:
        return "value"
    targets = [str(t) for t in facts["targets"]]
    columns = [str(c) for c in (facts.get("submission_columns") or targets)]
    if len(targets) == 1 and sorted(columns) != sorted(targets):
        return "proba_matrix"  # the sample submission has one column per class
    needs = metric_spec(plan.metric, plan.task_type)[1]["needs"]
    if needs == "topk":
        return "topk"  # ranked labels in one column (MAP@k)
    if plan.task_type == "multiclass_classification" and needs != "label":
        return "label"  # one column for a multiclass target can only hold labels
    return "proba_pos" if needs == "proba_matrix" else needs


def scoring_metric(plan: Plan, output: str) -> tuple[str, dict[str, Any], str | None]:
    """The metric the script's cross-validation computes: the task's, or a stand-in of the output's form
    (with a note saying so)."""
    name, spec = metric_spec(plan.metric, plan.task_type)
    if spec["needs"] == output or plan.task_type not in CLASSIFICATION:
        return name, spec, None
    stand_in = {
        "label": "accuracy",
        "proba_pos": "roc_auc",
        "proba_matrix": "multiclass_log_loss",
        "topk": "accuracy",
    }[output]
    return (
        stand_in,
        catalog.metrics()[stand_in],
        f"cross-validation scores {stand_in}: {name} does not fit a {output} submission",
    )


def _literal(value: Any) -> str:
    return repr(value)


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "/").replace('"""', "'''")


def _call(expr: str, args: dict[str, str]) -> str:
    return f"{expr}({', '.join(f'{k}={v}' for k, v in args.items())})"


def model_expression(
    family: str, role: str, params: dict[str, Any], objective: dict[str, str] | None = None
) -> str:
    """The constructor call of one model, e.g. `lgb.LGBMClassifier(n_estimators=400, ..., random_state=SEED)`.

    objective: constructor arguments (code expressions) setting the loss the task's metric asks for
    (catalog/metrics.yaml `objective`, e.g. an L1 loss for MAE).
    """
    spec = catalog.model_spec(family)
    role_spec = spec["roles"].get(role)
    if role_spec is None:
        raise PipesynthError(
            f"model family '{family}' has no {role}", "finalize the plan before rendering it"
        )
    tuned = {k: _literal(tuple(v) if isinstance(v, list) else v) for k, v in sorted(params.items())}
    if role_spec.get("wrap"):
        # e.g. CalibratedClassifierCV(LinearSVC(C=...), cv=3): the tuned model is the inner one
        inner = _call(role_spec["wrap"], {**tuned, **(role_spec.get("wrap_fixed") or {})})
        return _call(role_spec["expr"], {"estimator": inner, **(role_spec.get("fixed") or {})})
    return _call(role_spec["expr"], {**tuned, **(role_spec.get("fixed") or {}), **(objective or {})})


def _imports(plan: Plan, metric: dict[str, Any], eff: dict[str, str]) -> list[str]:
    lines: set[str] = set(metric.get("imports") or [])
    for model in plan.models:
        lines.update(catalog.model_spec(model.family).get("imports") or [])
    steps = catalog.load_steps()
    for kind in ("impute_numeric", "scaling", "categorical_encoding"):
        entry = steps[kind][eff[kind]]
        if entry:
            lines.update(entry["imports"])
    if plan.preprocessing.text.enabled:
        lines.add("from sklearn.feature_extraction.text import TfidfVectorizer")
    # plain imports first, then from-imports, each sorted: stable output for the same plan
    return sorted(lines, key=lambda line: (line.startswith("from "), line))


def _preprocessor_parts(eff: dict[str, str]) -> str:
    steps = catalog.load_steps()
    numeric = [steps[k][eff[k]]["expr"] for k in ("impute_numeric", "scaling") if steps[k][eff[k]]]
    categorical = [steps["categorical_encoding"][eff["categorical_encoding"]]["expr"]]
    if eff["categorical_encoding"] in ("ordinal", "target") and steps["scaling"][eff["scaling"]]:
        categorical.append(steps["scaling"][eff["scaling"]]["expr"])  # codes on the same scale as numbers
    numeric_expr = f"make_pipeline({', '.join(numeric)})" if numeric else '"passthrough"'
    lines = [
        "if NUMERIC:",
        f'{INDENT}parts.append(("numeric", {numeric_expr}, NUMERIC))',
        "if CATEGORICAL:",
        f'{INDENT}parts.append(("categorical", make_pipeline({", ".join(categorical)}), CATEGORICAL))',
    ]
    return textwrap.indent("\n".join(lines), INDENT)


def _models_body(plan: Plan, role: str) -> str:
    objectives = (
        metric_spec(plan.metric, plan.task_type)[1].get("objective") or {} if role == "regressor" else {}
    )
    entries = [
        f'{INDENT}("{m.family}", {model_expression(m.family, role, m.params, objectives.get(m.family))}),'
        for m in plan.models
    ]
    return textwrap.indent("\n".join(["return [", *entries, "]"]), INDENT)


def _early_stopping(plan: Plan) -> tuple[str, str, dict[str, str]]:
    """Bodies of fit_model and best_iterations, and the rounds parameter of each early-stopped model."""
    fit_lines: list[str] = []
    best_lines: list[str] = []
    rounds: dict[str, str] = {}
    for model in plan.models if plan.training.early_stopping else []:
        es = catalog.model_spec(model.family).get("early_stopping")
        if not es:
            continue
        keyword = "elif" if fit_lines else "if"
        fit_lines += [f'{keyword} name == "{model.family}" and X_val is not None:', INDENT + es["fit"]]
        best_lines += [f'if name == "{model.family}":', f"{INDENT}return {es['best']}"]
        rounds[model.family] = es["rounds_param"]
    fit_lines += ["else:", f"{INDENT}model.fit(X, y)"] if fit_lines else ["model.fit(X, y)"]
    best_lines.append("return None")
    return (
        textwrap.indent("\n".join(fit_lines), INDENT),
        textwrap.indent("\n".join(best_lines), INDENT),
        rounds,
    )


def _text_pairs_step(plan: Plan) -> str:
    """The text-pair step, with the pair detector's source (src.pipeline.code.compiler.text_pairs) embedded."""
    source = f"MAX_PAIR_COLUMNS = {text_pairs.MAX_PAIR_COLUMNS}\n\n\n" + inspect.getsource(
        text_pairs.pair_text_columns
    )
    return Template(catalog.template("step_text_pairs")).substitute(
        pair_text_columns=source.rstrip(), pairs_only=_literal(bool(plan.preprocessing.text_pairs_only))
    )


def _text_step(plan: Plan) -> str:
    text = plan.preprocessing.text
    if not text.enabled:
        return ""
    vectorizers = [
        (analyzer, tuple(text.word_ngram if analyzer == "word" else text.char_ngram))
        for analyzer in (text.analyzers if text.representation != "embeddings" else [])
    ]
    return Template(catalog.template("step_text")).substitute(
        text_vectorizers=_literal(vectorizers),
        max_features=_literal(int(text.max_features)),
        min_df=_literal(int(text.min_df)),
        sublinear_tf=_literal(bool(text.sublinear_tf) and text.weighting == "tfidf"),
        use_idf=_literal(text.weighting == "tfidf"),
        norm=_literal("l2" if text.weighting == "tfidf" else None),
    )


def _list_block(items: list[str]) -> str:
    return "\n".join(f"- {_docstring_safe(item)}" for item in items) if items else "- none"


def render_script(plan: Plan, facts: dict[str, Any]) -> str:
    """One self-contained solution script for the task (plan should come from parse_plan/finalize)."""
    check_facts(facts)
    if not plan.models:
        raise PipesynthError("the plan has no model", "build plans with parse_plan or default_plan")
    classification = plan.task_type in CLASSIFICATION
    role = "classifier" if classification else "regressor"
    output = output_kind(plan, facts)
    metric_name, metric, metric_note = scoring_metric(plan, output)
    notes = [*plan.notes, *([metric_note] if metric_note else [])]
    eff = effective_preprocessing(plan)
    pre, val = plan.preprocessing, plan.validation
    fit_body, best_body, rounds = _early_stopping(plan)
    feature_steps = []
    if pre.datetime_features:
        feature_steps.append(catalog.template("step_datetime"))
    if pre.split_compound:
        feature_steps.append(catalog.template("step_compound"))
    subs = [f"{s.requested} -> {s.replacement}: {s.reason}" for s in plan.substitutions]
    values = {
        "title": _docstring_safe(str(facts.get("title") or facts.get("slug") or "task")),
        "metric": metric_name,
        "summary": _docstring_safe(plan.summary()),
        "substitutions": _list_block(subs),
        "notes": _list_block(notes),
        "imports": "\n".join(_imports(plan, metric, eff)),
        "seed": _literal(int(plan.seed)),
        "id_column": _literal(str(facts["id_column"])),
        "targets": _literal([str(t) for t in facts["targets"]]),
        "classification": _literal(classification),
        "output": _literal(output),
        "top_k": _literal(int(metric.get("top_k") or 1)),
        "ordinal": _literal(bool(metric.get("ordinal")) and output == "label"),
        "higher_is_better": _literal(bool(metric["higher_is_better"])),
        "n_models": _literal(len(plan.models)),
        "log_target": _literal(bool(pre.log_target and not classification)),
        "clip_min": _literal(metric.get("clip_min")),
        "scheme": _literal(val.scheme),
        "n_splits": _literal(int(val.n_splits)),
        "holdout_fraction": _literal(float(val.holdout_fraction)),
        "ensemble": _literal(plan.ensemble),
        "max_train_rows": _literal(int(val.max_train_rows)),
        "time_budget_s": _literal(float(val.time_budget_s)),
        "early_stopping_rounds": _literal(int(plan.training.early_stopping_rounds)),
        "rounds_param": _literal(rounds),
        "max_categories": _literal(int(pre.max_categories)),
        "text_enabled": _literal(bool(pre.text.enabled)),
        "keep_other_columns": _literal(bool(pre.text.keep_other_columns)),
        "feature_steps": "\n\n".join(feature_steps),
        "text_step": _text_step(plan),
        "text_representation": _literal(pre.text.representation),
        "embeddings_step": catalog.template("step_embeddings") if pre.text.representation != "tfidf" else "",
        "text_pairs_step": _text_pairs_step(plan) if pre.text_pairs else "",
        "preprocessor_parts": _preprocessor_parts(eff),
        "make_models": _models_body(plan, role),
        "fit_model": fit_body,
        "best_iterations": best_body,
        "metric_body": textwrap.indent(metric["body"].strip(), INDENT),
    }
    script = Template(catalog.template("solution")).substitute(values)
    compile(script, "solution.py", "exec")  # a template bug fails here, at compile time, not in the sandbox
    return script
