"""The compiler's plan: what a solution script does, as data (JSON-serialisable, recorded in the journal).

`default_plan(facts)` is the sound plan for a data type (LightGBM for tabular and time series, TF-IDF + a linear
model for text); `finalize(plan, facts)` makes any plan runnable within the sandbox's budget (imputation and
scaling where a model needs them, hyperparameters clamped to the catalog's ranges, roles a family lacks) and
records every change it makes, so the plan always says what the script really does.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from src.errors import PipesynthError
from src.pipeline.code.compiler import catalog

CLASSIFICATION = ("binary_classification", "multiclass_classification", "multilabel_classification")
# "auto" is resolved from the models by `effective_preprocessing` (so a repaired plan re-resolves it)
IMPUTATIONS = ("auto", "none", "median", "mean", "most_frequent", "constant")
ENCODINGS = ("auto", "ordinal", "onehot", "target")
SCALINGS = ("auto", "none", "standard", "minmax", "robust")
SCHEMES = ("kfold", "stratified", "holdout", "timeseries")
ENSEMBLES = ("fold_average", "refit")
TEXT_ANALYZERS = ("word", "char_wb")
# tfidf: sparse n-gram counts | embeddings: a sentence encoder's vectors (all-MiniLM-L6-v2, shipped in a wheel) |
# both. Embeddings carry meaning TF-IDF misses (paraphrases, two phrases that say the same thing).
TEXT_REPRESENTATIONS = ("tfidf", "embeddings", "both")
# how n-gram counts are weighted: tfidf (idf, l2-normalised rows) | counts (raw term counts, naive Bayes's own
# model of a text: sharper, differently calibrated probabilities that a stack can weigh against TF-IDF members)
TEXT_WEIGHTINGS = ("tfidf", "counts")


@dataclass
class TextFeatures:
    """Features of the free-text columns: TF-IDF (fit once on train + test text: no labels involved) and/or
    sentence embeddings."""

    enabled: bool = False
    representation: str = "tfidf"  # one of TEXT_REPRESENTATIONS
    weighting: str = "tfidf"  # one of TEXT_WEIGHTINGS
    analyzers: list[str] = field(default_factory=lambda: ["word"])
    max_features: int = 50000
    word_ngram: list[int] = field(default_factory=lambda: [1, 2])
    char_ngram: list[int] = field(default_factory=lambda: [2, 5])
    min_df: int = 2
    sublinear_tf: bool = True
    keep_other_columns: bool = True  # numeric / categorical columns next to the text


@dataclass
class Preprocessing:
    impute_numeric: str = "auto"
    categorical_encoding: str = "auto"
    scaling: str = "auto"
    log_target: bool = False
    datetime_features: bool = True
    split_compound: bool = True  # "B/0/P"-style columns -> one column per part
    text_pairs: bool = True  # two or more text columns -> their similarity / overlap / length differences
    text_pairs_only: bool = False  # pair tasks: the pairs' cross features, no phrase's own TF-IDF block
    max_categories: int = 50  # object columns with more distinct values (and not text) are dropped
    text: TextFeatures = field(default_factory=TextFeatures)


@dataclass
class ModelSpec:
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    requested: str = ""  # what the instruction asked for ("" for the default plan)


@dataclass
class Validation:
    scheme: str = "kfold"
    n_splits: int = 5
    holdout_fraction: float = 0.2
    max_train_rows: int = 100000
    time_budget_s: float = 35.0  # cross-validation adds no fold after this many CPU seconds of the run


@dataclass
class Training:
    early_stopping: bool = True
    early_stopping_rounds: int = 50


@dataclass
class Substitution:
    requested: str
    replacement: str
    reason: str


@dataclass
class Plan:
    """Everything the renderer needs besides the task's public facts."""

    data_type: str
    task_type: str
    metric: str
    models: list[ModelSpec]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    validation: Validation = field(default_factory=Validation)
    training: Training = field(default_factory=Training)
    ensemble: str = "fold_average"
    seed: int = 0
    source: str = "default"  # "default" or "instruction"
    substitutions: list[Substitution] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # repair rounds, oldest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        data = copy.deepcopy(data)
        pre = data.pop("preprocessing", {}) or {}
        text = TextFeatures(**(pre.pop("text", {}) or {}))
        return cls(
            models=[ModelSpec(**m) for m in data.pop("models")],
            preprocessing=Preprocessing(**pre, text=text),
            validation=Validation(**(data.pop("validation", {}) or {})),
            training=Training(**(data.pop("training", {}) or {})),
            substitutions=[Substitution(**s) for s in data.pop("substitutions", [])],
            **data,
        )

    def copy(self) -> Plan:
        return Plan.from_dict(self.to_dict())

    def substitute(self, requested: str, replacement: str, reason: str) -> None:
        """Record that `requested` is not available and `replacement` stands in for it (once per pair)."""
        sub = Substitution(requested, replacement, reason)
        if sub not in self.substitutions:
            self.substitutions.append(sub)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def summary(self) -> str:
        """One line for logs and the script's docstring."""
        pre = self.preprocessing
        eff = effective_preprocessing(self)
        steps = [
            f"impute={eff['impute_numeric']}",
            f"encode={eff['categorical_encoding']}",
            f"scale={eff['scaling']}",
        ]
        if pre.log_target:
            steps.append("log1p target")
        if pre.text.enabled and pre.text.representation != "embeddings":
            steps.append(f"{pre.text.weighting}[{'+'.join(pre.text.analyzers)}, {pre.text.max_features}]")
        if pre.text.enabled and pre.text.representation != "tfidf":
            steps.append("sentence embeddings")
        models = " + ".join(f"{m.family}({_fmt_params(m.params)})" for m in self.models)
        val = self.validation
        scheme = f"{val.scheme}" + ("" if val.scheme == "holdout" else f"x{val.n_splits}")
        return f"{'; '.join(steps)} | {models} | {scheme}, {self.ensemble}"


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


# --------------------------------------------------------------------------- facts


REQUIRED_FACTS = ("data_type", "task_type", "id_column", "targets", "metric")


def check_facts(facts: dict[str, Any], keys: tuple[str, ...] = REQUIRED_FACTS) -> None:
    """The public task facts the compiler needs; one clear error naming what is missing."""
    missing = [k for k in keys if not facts.get(k)]
    if missing:
        raise PipesynthError(
            f"task facts lack {missing} (task '{facts.get('slug', '?')}')",
            "pass the task's public task.json (prepare_task writes it under public/)",
        )


def is_classification(facts_or_plan: dict[str, Any] | Plan) -> bool:
    task_type = facts_or_plan.task_type if isinstance(facts_or_plan, Plan) else facts_or_plan["task_type"]
    return task_type in CLASSIFICATION


def metric_spec(metric: str, task_type: str) -> tuple[str, dict[str, Any]]:
    """(name, spec) of the metric the script scores itself with; a sound stand-in for an unknown metric."""
    table = catalog.metrics()
    if metric in table:
        return metric, table[metric]
    top_k = re.fullmatch(r"map@([1-9]\d*)", metric)
    if top_k:  # one rule for every k: the script's TOP_K
        return metric, {**table["map@k"], "top_k": int(top_k.group(1))}
    if task_type == "multilabel_classification":
        fallback = "mean_column_roc_auc"
    elif task_type in CLASSIFICATION:
        fallback = "accuracy"
    else:
        fallback = "rmse"
    return fallback, table[fallback]


def text_data(facts: dict[str, Any]) -> bool:
    return facts.get("data_type") == "text"


# --------------------------------------------------------------------------- defaults


def default_model(facts: dict[str, Any]) -> ModelSpec:
    """LightGBM for tabular / time series / anything else, a linear model over TF-IDF for text."""
    return ModelSpec(family="linear" if text_data(facts) else "lightgbm")


def default_plan(facts: dict[str, Any], seed: int = 0) -> Plan:
    """The compiler's fixed default plan for the task's data type (also the `baseline_gbdt` solution)."""
    return finalize(base_plan(facts, seed), facts)


def base_plan(facts: dict[str, Any], seed: int = 0) -> Plan:
    """The default plan before `finalize` (what the parser starts from and overrides)."""
    check_facts(facts)
    plan = Plan(
        data_type=str(facts["data_type"]),
        task_type=str(facts["task_type"]),
        metric=str(facts["metric"]),
        models=[default_model(facts)],
        seed=seed,
    )
    if facts["data_type"] == "time_series":
        # honest validation for forecasting: train on the past, score on the future; then refit on everything
        plan.validation.scheme = "timeseries"
        plan.ensemble = "refit"
    if text_data(facts):
        plan.preprocessing.text = TextFeatures(enabled=True, analyzers=["word", "char_wb"])
        if is_classification(facts):
            plan.models[0].params["C"] = 4.0  # TF-IDF features are many and weak: weaker regularisation
    # metrics on a log scale (catalog/metrics.yaml `log_target`): learn log1p(y)
    plan.preprocessing.log_target = bool(metric_spec(plan.metric, plan.task_type)[1].get("log_target"))
    return plan


# --------------------------------------------------------------------------- finalize


def _role(plan: Plan) -> str:
    return "classifier" if is_classification(plan) else "regressor"


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _coerce(name: str, value: Any, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "int":
        return int(round(float(value)))
    if kind == "float":
        return float(value)
    if kind == "choice":
        for choice in spec["choices"]:
            if str(choice) == str(value) or (
                isinstance(choice, float) and _is_number(value) and float(value) == choice
            ):
                return choice
        raise ValueError(f"not one of {spec['choices']}")
    if kind == "layers":
        layers = [int(v) for v in (value if isinstance(value, list | tuple) else [value])]
        if not layers:
            raise ValueError("no layer sizes")
        return layers
    raise ValueError(f"unknown parameter type {kind}")


def _clamp(value: Any, spec: dict[str, Any]) -> Any:
    lo, hi = spec.get("min"), spec.get("max")
    if isinstance(value, list):
        return [min(max(v, lo), hi) for v in value[:4]]  # at most 4 hidden layers
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return type(value)(lo)
        if hi is not None and value > hi:
            return type(value)(hi)
    return value


def role_params(family: str, role: str) -> dict[str, dict[str, Any]]:
    """Tunable parameters of a family in a role: shared ones updated by role-specific ones."""
    spec = catalog.model_spec(family)
    params = dict(spec.get("params") or {})
    params.update((spec["roles"].get(role) or {}).get("params") or {})
    return params


def _resolve_family(plan: Plan, model: ModelSpec, role: str, text_on: bool) -> ModelSpec:
    """A family that has `role` and fits the features (sparse TF-IDF, non-negative inputs); records each change."""
    seen: set[str] = set()
    while model.family not in seen:
        seen.add(model.family)
        spec = catalog.model_spec(model.family)
        if role not in spec["roles"]:
            target = spec.get("fallback_role") or "linear"
            plan.note(f"{model.family} has no {role}; using {target}")
        elif text_on and not spec["accepts_sparse"]:
            target = "linear" if plan.data_type == "text" else "lightgbm"
            plan.substitute(
                model.family, target, f"{model.family} needs dense input; TF-IDF features are sparse"
            )
        elif spec.get("nonnegative_only") and not text_on:
            target = "gaussian_nb"
            plan.note(f"{model.family} needs count-like features; tabular data uses {target}")
        else:
            return model
        model = ModelSpec(family=target, params=dict(model.params), requested=model.requested)
    return ModelSpec(family="linear" if text_on else "lightgbm", requested=model.requested)  # catalog cycle


def _resolve_params(plan: Plan, model: ModelSpec, role: str) -> dict[str, Any]:
    """The family's parameters: requested values coerced and clamped to the catalog's ranges, then defaults."""
    allowed = role_params(model.family, role)
    params: dict[str, Any] = {}
    for name, value in model.params.items():
        if name not in allowed:
            continue  # a parameter of another family (the parser extracts them per instruction)
        try:
            coerced = _coerce(name, value, allowed[name])
        except (TypeError, ValueError) as err:
            plan.note(f"{model.family}: ignored {name}={value!r} ({err})")
            continue
        clamped = _clamp(coerced, allowed[name])
        if clamped != coerced:
            plan.note(f"{model.family}: {name}={coerced} clamped to {clamped} (valid range / runtime budget)")
        params[name] = clamped
    for name, pspec in allowed.items():
        if name not in params and pspec.get("default") is not None:
            params[name] = pspec["default"]
    return params


def effective_preprocessing(plan: Plan) -> dict[str, str]:
    """Concrete impute / encode / scale choices: "auto" resolved from what the plan's models need."""
    specs = [catalog.model_spec(m.family) for m in plan.models]
    pre = plan.preprocessing
    nonneg = any(s.get("nonnegative_only") for s in specs)
    scale_sensitive = any(s["needs_scaling"] for s in specs)
    impute = pre.impute_numeric
    if impute == "auto":
        impute = "none" if all(s["handles_missing"] for s in specs) else "median"
    encoding = pre.categorical_encoding
    if encoding == "auto":
        encoding = "onehot" if scale_sensitive or nonneg else "ordinal"
    scaling = pre.scaling
    if scaling == "auto":
        scaling = "minmax" if nonneg else ("standard" if scale_sensitive else "none")
    return {"impute_numeric": impute, "categorical_encoding": encoding, "scaling": scaling}


def finalize(plan: Plan, facts: dict[str, Any]) -> Plan:
    """Make `plan` consistent and runnable for this task, in place; every change is recorded in `plan.notes`."""
    check_facts(facts, ("data_type", "task_type", "metric"))
    plan.data_type, plan.task_type = str(facts["data_type"]), str(facts["task_type"])
    plan.metric = str(facts["metric"])
    role = _role(plan)
    pre, val, text = plan.preprocessing, plan.validation, plan.preprocessing.text
    classification = is_classification(plan)

    metric_name, _ = metric_spec(plan.metric, plan.task_type)
    if metric_name != plan.metric:
        plan.note(
            f"metric {plan.metric} has no in-script implementation; cross-validation uses {metric_name}"
        )

    # enumerations: an unknown value (only from a hand-edited plan) falls back to the first allowed one
    for obj, name, allowed in (
        (pre, "impute_numeric", IMPUTATIONS),
        (pre, "categorical_encoding", ENCODINGS),
        (pre, "scaling", SCALINGS),
        (val, "scheme", SCHEMES),
        (text, "representation", TEXT_REPRESENTATIONS),
        (text, "weighting", TEXT_WEIGHTINGS),
        (plan, "ensemble", ENSEMBLES),
    ):
        if getattr(obj, name) not in allowed:
            plan.note(f"{name}={getattr(obj, name)!r} is unknown; using {allowed[0]}")
            setattr(obj, name, allowed[0])
    text.analyzers = [a for a in dict.fromkeys(text.analyzers) if a in TEXT_ANALYZERS] or ["word"]
    text.max_features = int(min(max(text.max_features, 500), 200000))
    text.word_ngram = _ngram(text.word_ngram, 1, 3, [1, 2])
    text.char_ngram = _ngram(text.char_ngram, 1, 6, [2, 5])
    text.min_df = int(min(max(text.min_df, 1), 10))
    if text_data(facts) and not text.enabled:
        text.enabled = True  # a text task without text features has nothing to learn from
        plan.note("text task: TF-IDF features switched on")

    pre.log_target = bool(pre.log_target and not classification)
    if classification and val.scheme == "kfold":
        val.scheme = "stratified"
    if not classification and val.scheme == "stratified":
        val.scheme = "kfold"
        plan.note("stratified folds need classes; using plain k-fold")
    val.n_splits = int(min(max(val.n_splits, 2), 10))
    val.holdout_fraction = float(min(max(val.holdout_fraction, 0.05), 0.5))
    val.max_train_rows = int(max(val.max_train_rows, 100))
    val.time_budget_s = float(min(max(val.time_budget_s, 1.0), 600.0))
    if val.scheme in ("holdout", "timeseries"):
        plan.ensemble = "refit"  # the validation models saw part of the data (or only the past): refit on all
    plan.training.early_stopping_rounds = int(min(max(plan.training.early_stopping_rounds, 5), 500))

    if not plan.models:
        plan.models = [default_model(facts)]
        plan.note("no model requested; using the default for the data type")
    if len(plan.models) > 3:
        plan.note(f"{len(plan.models)} models requested; the first 3 are averaged (runtime budget)")
    resolved: list[ModelSpec] = []
    for model in plan.models[:3]:
        model = _resolve_family(plan, model, role, text.enabled)
        if any(m.family == model.family for m in resolved):
            continue
        model.params = _resolve_params(plan, model, role)
        resolved.append(model)
    plan.models = resolved

    specs = [catalog.model_spec(m.family) for m in plan.models]
    if pre.impute_numeric == "none" and not all(s["handles_missing"] for s in specs):
        pre.impute_numeric = "median"
        plan.note("a model cannot take missing values: numeric imputation none -> median")
    if any(s.get("nonnegative_only") for s in specs) and text.representation != "tfidf":
        text.representation = "tfidf"
        plan.note("naive Bayes needs non-negative inputs: sentence embeddings -> TF-IDF")
    if any(s.get("nonnegative_only") for s in specs) and pre.scaling in ("standard", "robust"):
        pre.scaling = "minmax"
        plan.note("naive Bayes needs non-negative inputs: scaling -> minmax")
    if pre.categorical_encoding == "target" and plan.task_type == "multilabel_classification":
        pre.categorical_encoding = "ordinal"
        plan.note("target encoding is per target; multilabel data uses ordinal encoding")
    if plan.training.early_stopping and not any(s["early_stopping"] for s in specs):
        plan.training.early_stopping = False
    # budget caps of the slowest model: training rows, and TF-IDF width for models slow on wide sparse input
    max_rows = min(int(s["max_rows"]) for s in specs)
    if val.max_train_rows > max_rows:
        val.max_train_rows = max_rows
        plan.note(f"training rows capped at {max_rows} (the slowest model's budget)")
    caps = [int(s["text_max_features"]) for s in specs if s.get("text_max_features")]
    if text.enabled and caps and text.max_features > min(caps):
        text.max_features = min(caps)
        plan.note(f"TF-IDF capped at {min(caps)} columns per vectorizer (the slowest model's budget)")
    return plan


def _ngram(value: Any, lo: int, hi: int, default: list[int]) -> list[int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        return default
    a, b = min(max(a, lo), hi), min(max(b, lo), hi)
    return [min(a, b), max(a, b)]
