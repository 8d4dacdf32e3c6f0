"""Parse an instruction (Data preprocessing / Model architecture / Model training / Model prediction) into a Plan.

Keyword and regular-expression based (the vocabulary is data: catalog/vocabulary.yaml), deterministic, and
robust to garbage: whatever the text does not say keeps the default of the task's data type, so an empty or
meaningless instruction yields exactly the default plan. Requests that cannot run offline (BERT, EfficientNet,
XGBoost without the package, stacking, hyperparameter searches) are replaced by the nearest available step and
recorded in `plan.substitutions` / `plan.notes`.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from src.corpus.hyperparameters import NUM, SEP, compile_patterns, first_match, number, stated_params
from src.pipeline.code.compiler import catalog
from src.pipeline.code.compiler.plan import ModelSpec, Plan, base_plan, finalize, is_classification

SECTION_KEYS = {
    "preprocessing": ("preprocess", "feature engineering", "data preparation", "data loading", "cleaning"),
    "model": ("architecture", "model training", "training", "model"),
    "prediction": ("predict", "submission", "inference", "output", "testing", "evaluation"),
}


@dataclass
class Mention:
    """A model named in the instruction: where, what was written, what it maps to."""

    position: int
    text: str
    entry: dict[str, Any]


def instruction_body(text: str) -> str:
    """The instruction itself: the part after a Llama-2 `[/INST]` when a whole prompt is passed, without `</s>`."""
    if "[/INST]" in text:
        text = text.rsplit("[/INST]", 1)[1]
    return text.replace("</s>", "").strip()


def split_sections(text: str) -> dict[str, str]:
    """{preprocessing, model, prediction, other} -> text, from headers such as "2. Model Architecture:"."""
    sections: dict[str, list[str]] = {"preprocessing": [], "model": [], "prediction": [], "other": []}
    current = "other"
    header = re.compile(r"^\W*(?:\d+[.)]\s*)?([a-z][a-z /&-]{2,60}?)\s*:")
    for line in text.splitlines():
        match = header.match(line.strip().lower())
        if match and len(match.group(1).split()) <= 7:
            name = match.group(1)
            for key, words in SECTION_KEYS.items():
                if any(word in name for word in words):
                    current = key
                    break
        sections[current].append(line)
    return {key: "\n".join(lines).lower() for key, lines in sections.items()}


def find_models(text: str) -> list[Mention]:
    """Every model family named in `text`, first mention first (one mention per vocabulary entry)."""
    mentions = []
    for entry in catalog.vocabulary()["models"]:
        match = first_match(entry["patterns"], text)
        if match:
            mentions.append(Mention(match.start(), match.group(0).strip(), entry))
    return sorted(mentions, key=lambda m: m.position)


def _unavailable_reason(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return f"{module} is outside the sandbox's libraries ({', '.join(sorted(catalog.SANDBOX_MODULES))})"


def _substitution_reason(entry: dict[str, Any]) -> str:
    module = entry.get("module")
    if module and catalog.module_usable(module):
        return f"no compiler template for {module}"  # importable, but the catalog cannot emit it
    if module:
        return _unavailable_reason(module)
    return entry.get("why") or "needs pretrained weights or a deep-learning stack: unavailable offline"


def _model_from_mention(mention: Mention, kind: str) -> ModelSpec | None:
    """The family a mention maps to (None for a representation such as word embeddings)."""
    entry = mention.entry
    if "family" in entry:
        return ModelSpec(family=entry["family"], requested=mention.text)
    if entry.get("only_features"):
        return None
    return ModelSpec(family=entry["substitute"][kind], requested=mention.text)


REPRESENTATION_NAMES = {"tfidf": "TF-IDF features", "both": "TF-IDF features + sentence embeddings"}


def _representation(plan: Plan, entry: dict[str, Any], kind: str) -> str | None:
    """For a text task, the text features an unavailable model's request stands for (a vocabulary entry's
    `features`), set on the plan; None otherwise. A pretrained encoder becomes the shipped sentence encoder."""
    features = entry.get("features")
    if not features or kind != "text":
        return None
    if features != "tfidf":
        plan.preprocessing.text.representation = features
    return REPRESENTATION_NAMES[features]


def _choose_models(sections: dict[str, str], whole: str, plan: Plan) -> list[tuple[ModelSpec, str]]:
    """The models the instruction asks for: every named one when it asks for an ensemble, else one — the first
    available family named (a named unavailable model is then the representation it feeds: BERT embeddings into
    a logistic regression), or the stand-in of the first unavailable one."""
    scope = sections["model"] if find_models(sections["model"]) else whole
    mentions = find_models(scope)
    if not mentions:
        return []
    kind = "text" if plan.data_type == "text" else "tabular"
    vocab = catalog.vocabulary()
    candidates: list[tuple[Mention, ModelSpec]] = []
    for mention in mentions:
        model = _model_from_mention(mention, kind)
        if model is not None and all(m.family != model.family for _, m in candidates):
            candidates.append((mention, model))
    if first_match(vocab["ensemble"], whole):
        chosen = candidates
    else:
        available = [c for c in candidates if "family" in c[0].entry]
        chosen = (available or candidates)[:1]
        unused = [m.requested for _, m in candidates if all(m is not c[1] for c in chosen)]
        if unused:
            plan.note(f"no ensemble asked for: using {chosen[0][1].requested}; not used: {', '.join(unused)}")
    chosen_mentions = {id(mention) for mention, _ in chosen}
    for mention in mentions:
        entry = mention.entry
        if "family" in entry:
            continue
        requested = f"{entry['requested']} ('{mention.text}')"
        features = _representation(plan, entry, kind)
        if id(mention) in chosen_mentions:
            model = next(m for men, m in chosen if men is mention)
            used = f"{features} + {model.family}" if features else model.family
            plan.substitute(requested, used, _substitution_reason(entry))
        else:  # named but not the model used: what runs in its place is the chosen model (and its text features)
            used = " + ".join(m.family for _, m in chosen)
            used = f"{features} + {used}" if features else used
            plan.substitute(requested, used, _substitution_reason(entry))
    if first_match(vocab["stacking"], whole) and len(chosen) > 1:
        plan.substitute(
            "stacking with a meta-learner", "average of the base models", "keeps the one-minute budget"
        )
    # each model's own text: from its first mention to the next model mention ("ridge with alpha=10 and a lasso
    # with alpha=0.0005"), where its hyperparameters are read first
    starts = sorted({m.position for m in mentions} | {len(scope)})
    return [
        (model, scope[mention.position : next(p for p in starts if p > mention.position)])
        for mention, model in chosen
    ]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;])\s+|\n", text) if s.strip()]


def _pick(options: dict[str, list[str]], text: str) -> str | None:
    """The option whose pattern appears first in `text` (None when none does)."""
    best: tuple[int, str] | None = None
    for option, patterns in options.items():
        match = first_match(patterns, text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), option)
    return best[1] if best else None


def _preprocessing(plan: Plan, sections: dict[str, str], whole: str) -> None:
    vocab = catalog.vocabulary()
    pre = plan.preprocessing
    missing_context = compile_patterns(vocab["missing_context"])
    about_missing = " ".join(s for s in _sentences(whole) if missing_context.search(s))
    impute = _pick(vocab["imputation"], about_missing)
    if impute:
        pre.impute_numeric = impute
    encoding = _pick(vocab["encoding"], whole)
    if encoding:
        pre.categorical_encoding = encoding
    scaling = _pick(vocab["scaling"], whole)
    if scaling:
        pre.scaling = scaling
    if not is_classification(plan) and first_match(vocab["log_target"], whole):
        pre.log_target = True

    text = pre.text
    tfidf = first_match(vocab["tfidf"], whole)
    char = first_match(vocab["char_ngrams"], whole)
    if tfidf or char:
        if not text.enabled:
            text.enabled = True
            if plan.data_type != "text":
                text.analyzers = ["word"]
        if plan.data_type == "text" or char:
            text.analyzers = ["word", "char_wb"] if char else ["word"]
    if first_match(vocab["term_counts"], whole) and not first_match(vocab["tfidf_weights"], whole):
        text.weighting = "counts"
    ngram = re.search(r"ngram_range\s*=\s*\(\s*(\d)\s*,\s*(\d)\s*\)", whole)
    if ngram:
        bounds = [int(ngram.group(1)), int(ngram.group(2))]
        if char and char.start() < ngram.start() and ngram.start() - char.end() < 120:
            text.char_ngram = bounds
        else:
            text.word_ngram = bounds
    elif re.search(r"\btri-?grams?\b", whole):
        text.word_ngram = [1, 3]
    elif re.search(r"\bbi-?grams?\b", whole):
        text.word_ngram = [1, 2]
    for sentence in _sentences(whole):
        match = re.search(rf"\bmax_features{SEP}{NUM}", sentence)
        if match and re.search(r"vectori[sz]er|tf-?idf|count|vocab", sentence):
            value = number(match.group(1))
            if value:
                text.max_features = int(value)
            break


def _validation(plan: Plan, whole: str) -> None:
    vocab = catalog.vocabulary()
    val = plan.validation
    folds = re.search(
        rf"\b(\d{{1,2}})\s*-?\s*folds?\b|\bn_splits{SEP}(\d+)|\b(?:k|stratified|group)?kfold\(\s*(?:n_splits\s*=\s*)?(\d+)|\bcv\s*=\s*(\d+)",
        whole,
    )
    if folds:
        value = int(next(g for g in folds.groups() if g))
        val.n_splits = value
        val.scheme = "kfold"
    if first_match(vocab["timeseries"], whole):
        val.scheme = "timeseries"
    elif first_match(vocab["stratified"], whole) and is_classification(plan):
        val.scheme = "stratified"
    elif not folds and first_match(vocab["holdout"], whole):
        val.scheme = "holdout"
    size = re.search(rf"\btest_size{SEP}{NUM}", whole) or re.search(
        r"\b(\d{1,2})\s*%\s*(?:of the data )?(?:for |as )?(?:validation|the validation|test)", whole
    )
    if size:
        value = number(size.group(1))
        if value:
            val.holdout_fraction = value / 100 if value > 1 else value
    if first_match(vocab["early_stopping"], whole):
        plan.training.early_stopping = True
        rounds = re.search(
            rf"\b(?:early_stopping_rounds|patience|early stopping (?:rounds?|after|of|with))\s*(?:=|:|of)?\s*{NUM}",
            whole,
        )
        if rounds and number(rounds.group(1)):
            plan.training.early_stopping_rounds = int(number(rounds.group(1)) or 50)


def parse_plan(instruction_text: str, task_public_facts: dict[str, Any], seed: int = 0) -> Plan:
    """The plan an instruction asks for, on the defaults of the task's data type (see module docstring)."""
    facts = task_public_facts
    plan = base_plan(facts, seed)
    plan.source = "instruction"
    body = instruction_body(instruction_text or "")
    whole = body.lower()
    sections = split_sections(body)
    vocab = catalog.vocabulary()

    chosen = _choose_models(sections, whole, plan)
    params = stated_params(sections["model"] or whole) or stated_params(whole)
    models = [model for model, _ in chosen]
    if models:
        defaults = {m.family: m.params for m in plan.models}  # e.g. the text default's C=4 for a linear model
        for model, own_text in chosen:
            model.params = {**defaults.get(model.family, {}), **params, **stated_params(own_text)}
        plan.models = models
    elif params:
        for model in plan.models:  # numbers without a model name: they tune the default model
            model.params.update(params)
    _preprocessing(plan, sections, whole)
    _validation(plan, whole)
    if first_match(vocab["tuning"], whole):
        plan.note("hyperparameter search not run (one-minute budget): the named or default values are used")
    for pattern in vocab["ignored"]:
        match = re.search(pattern, whole)
        if match:
            plan.note(f"'{match.group(0)}' is not part of the compiled pipeline")
    if not body.strip() or (not models and not params):
        plan.note(
            "the instruction names no model or setting the compiler knows: default plan for the data type"
        )
    return finalize(plan, facts)
