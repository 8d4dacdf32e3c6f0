"""Instruction -> Plan: real corpus instructions, numbers from text, substitutions, garbage and determinism."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from src.errors import PipesynthError
from src.pipeline.code.base import Coder, parse_cv_score
from src.pipeline.code.compiler import CompilerCoder, Plan, default_plan, parse_plan, render_script
from src.pipeline.code.compiler.parse import instruction_body, split_sections

TITANIC = {
    "slug": "titanic",
    "data_type": "tabular",
    "task_type": "binary_classification",
    "id_column": "PassengerId",
    "targets": ["Survived"],
    "submission_columns": ["Survived"],
    "metric": "accuracy",
    "higher_is_better": True,
    "class_labels": [0, 1],
}
SPOOKY = {
    "slug": "spooky-author-identification",
    "data_type": "text",
    "task_type": "multiclass_classification",
    "id_column": "id",
    "targets": ["author"],
    "submission_columns": ["EAP", "HPL", "MWS"],
    "metric": "multiclass_log_loss",
    "higher_is_better": False,
    "class_labels": ["EAP", "HPL", "MWS"],
}
HOUSE = {
    "slug": "house-prices-advanced-regression-techniques",
    "data_type": "tabular",
    "task_type": "regression",
    "id_column": "Id",
    "targets": ["SalePrice"],
    "submission_columns": ["SalePrice"],
    "metric": "rmse_log",
    "higher_is_better": False,
}
BIKE = {
    "slug": "bike-sharing-demand",
    "data_type": "time_series",
    "task_type": "regression",
    "id_column": "datetime",
    "targets": ["count"],
    "submission_columns": ["count"],
    "metric": "rmsle",
    "higher_is_better": False,
}


@pytest.fixture(scope="module")
def corpus(corpus_csv: Path) -> pd.DataFrame:
    return pd.read_csv(corpus_csv)


def _prompt(corpus: pd.DataFrame, kaggle_id: int) -> str:
    return str(corpus.loc[corpus.kaggle_id == kaggle_id, "prompt"].iloc[0])


def _comparable(plan: Plan) -> dict:
    data = plan.to_dict()
    for key in ("source", "notes"):
        data.pop(key)
    return data


def test_real_lightgbm_instruction(corpus: pd.DataFrame) -> None:
    # Titanic notebook: LGBMClassifier (dart), train_test_split, a GridSearchCV over learning rates
    plan = parse_plan(_prompt(corpus, 1007734), TITANIC)
    assert [m.family for m in plan.models] == ["lightgbm"]
    assert plan.models[0].requested.startswith("lgbm")
    assert plan.substitutions == []
    assert plan.validation.scheme == "holdout" and plan.ensemble == "refit"
    assert any("hyperparameter search not run" in n for n in plan.notes)
    assert plan.source == "instruction"


def test_real_bert_instruction_is_substituted_by_embeddings_and_tfidf_linear(corpus: pd.DataFrame) -> None:
    plan = parse_plan(_prompt(corpus, 11007759), SPOOKY)  # BERT on TPU via Keras
    assert [m.family for m in plan.models] == ["linear"]
    assert plan.preprocessing.text.enabled
    assert plan.preprocessing.text.representation == "both"  # the shipped sentence encoder stands in for BERT
    bert = [s for s in plan.substitutions if s.requested.startswith("BERT-family")]
    assert bert and bert[0].replacement == "TF-IDF features + sentence embeddings + linear"
    assert "offline" in bert[0].reason
    assert plan.models[0].params["C"] == 4.0  # the text default's regularisation is kept for the stand-in


def test_real_cnn_instructions_are_substituted(corpus: pd.DataFrame) -> None:
    effnet = parse_plan(_prompt(corpus, 5692577), TITANIC)  # EfficientNetB3 + pseudo labels
    requested = [s.requested for s in effnet.substitutions]
    assert any(r.startswith("convolutional network ('efficientnet") for r in requested)
    assert any("pseudo" in n for n in effnet.notes)
    cnn = parse_plan(_prompt(corpus, 624629), TITANIC)  # tflearn CNN, "Learning rate (LR) is set to 1e-3"
    assert any(s.requested.startswith("convolutional network") for s in cnn.substitutions)
    assert cnn.models[0].family in ("lightgbm", "mlp")


def test_xgboost_becomes_lightgbm_with_the_reason(corpus: pd.DataFrame) -> None:
    plan = parse_plan(_prompt(corpus, 2104212), TITANIC)
    assert [m.family for m in plan.models] == ["lightgbm"]
    (sub,) = [s for s in plan.substitutions if s.requested.startswith("XGBoost")]
    assert sub.replacement == "lightgbm"
    if importlib.util.find_spec("xgboost") is None:
        assert sub.reason == "xgboost is not installed"


def test_numbers_are_read_and_clamped_to_the_budget() -> None:
    text = (
        "Model architecture:\n- A LightGBM classifier with a learning rate of 0.03, n_estimators=5,000 and "
        "num_leaves: 64, max_depth set to 7, feature_fraction=0.7.\n"
        "Model training:\n- 10-fold stratified cross-validation with early_stopping_rounds=100."
    )
    plan = parse_plan(text, TITANIC)
    params = plan.models[0].params
    assert params["learning_rate"] == 0.03 and params["num_leaves"] == 64 and params["max_depth"] == 7
    assert params["colsample_bytree"] == 0.7
    assert params["n_estimators"] == 2000  # 5000 requested; the catalog's runtime cap
    assert any("n_estimators=5000 clamped to 2000" in n for n in plan.notes)
    assert plan.validation.scheme == "stratified" and plan.validation.n_splits == 10
    assert plan.training.early_stopping and plan.training.early_stopping_rounds == 100


def test_preprocessing_words() -> None:
    text = (
        "Data preprocessing:\n- Missing values in numeric columns are filled with the median.\n"
        "- Categorical columns are one-hot encoded with pd.get_dummies.\n- Features are scaled with StandardScaler.\n"
        "- The target SalePrice is log-transformed with np.log1p.\n"
        "Model architecture:\n- A Ridge regression with alpha=10 and a Lasso with alpha=0.0005, blended by averaging the predictions.\n"
        "Model training:\n- 5-fold KFold cross-validation."
    )
    plan = parse_plan(text, HOUSE)
    pre = plan.preprocessing
    assert (pre.impute_numeric, pre.categorical_encoding, pre.scaling) == ("median", "onehot", "standard")
    assert pre.log_target
    assert [m.family for m in plan.models] == ["linear", "lasso"]  # an ensemble was asked for
    assert plan.models[0].params == {"alpha": 10.0} and plan.models[1].params == {"alpha": 0.0005}
    assert plan.validation.scheme == "kfold" and plan.validation.n_splits == 5


def test_text_vectorizer_settings() -> None:
    text = (
        "Data preprocessing:\n- TfidfVectorizer(ngram_range=(1, 3), max_features=20000) on the text.\n"
        "- A second TF-IDF with analyzer='char'.\nModel architecture:\n- MultinomialNB with alpha=0.05."
    )
    plan = parse_plan(text, SPOOKY)
    text_cfg = plan.preprocessing.text
    assert text_cfg.enabled and text_cfg.analyzers == ["word", "char_wb"]
    assert text_cfg.word_ngram == [1, 3] and text_cfg.max_features == 20000
    assert [m.family for m in plan.models] == ["naive_bayes"] and plan.models[0].params == {"alpha": 0.05}
    assert plan.preprocessing.scaling in ("auto", "minmax")  # non-negative inputs for naive Bayes


def test_count_vectors_are_read_as_raw_counts() -> None:
    counts = "Data preprocessing:\n- CountVectorizer word counts of the text.\nModel architecture:\n- MultinomialNB."
    assert parse_plan(counts, SPOOKY).preprocessing.text.weighting == "counts"
    both = "Data preprocessing:\n- CountVectorizer, then a TF-IDF transform.\nModel architecture:\n- MultinomialNB."
    assert parse_plan(both, SPOOKY).preprocessing.text.weighting == "tfidf"


def test_sklearn_transformer_names_are_not_bert() -> None:
    text = "Data preprocessing:\n- A ColumnTransformer and a power transformer.\nModel architecture:\n- Random forest."
    plan = parse_plan(text, HOUSE)
    assert plan.substitutions == [] and [m.family for m in plan.models] == ["random_forest"]


@pytest.mark.parametrize("facts", [TITANIC, SPOOKY, HOUSE, BIKE], ids=lambda f: f["slug"])
def test_garbage_and_empty_instructions_give_the_default_plan(facts: dict) -> None:
    rng = random.Random(0)
    vocab = ["▁the", "data", "##ing", "<unk>", "model", "ĠĠ", "0.", "::", "é", "}", "ing", "lay", "\n", "-"]
    garbage = " ".join(rng.choice(vocab) for _ in range(400))
    expected = _comparable(default_plan(facts))
    for text in ("", "   ", garbage, "Data preprocessing:\nModel architecture:\nModel training:\n"):
        plan = parse_plan(text, facts)
        assert _comparable(plan) == expected
        assert any("default plan" in n for n in plan.notes)


def test_defaults_per_data_type() -> None:
    assert [m.family for m in default_plan(TITANIC).models] == ["lightgbm"]
    spooky = default_plan(SPOOKY)
    assert [m.family for m in spooky.models] == ["linear"] and spooky.preprocessing.text.analyzers == [
        "word",
        "char_wb",
    ]
    bike = default_plan(BIKE)
    assert (
        bike.validation.scheme == "timeseries" and bike.ensemble == "refit" and bike.preprocessing.log_target
    )
    assert default_plan(HOUSE).preprocessing.log_target  # rmse of log prices


def test_plan_is_deterministic_and_json_round_trips(corpus: pd.DataFrame) -> None:
    text = _prompt(corpus, 1007734)
    first, second = parse_plan(text, TITANIC), parse_plan(text, TITANIC)
    assert first.to_json() == second.to_json()
    again = Plan.from_dict(json.loads(first.to_json()))
    assert again == first


def test_missing_facts_are_one_clear_error() -> None:
    with pytest.raises(PipesynthError, match="metric"):
        parse_plan("LightGBM", {k: v for k, v in TITANIC.items() if k != "metric"})


def test_sections_and_prompt_body() -> None:
    prompt = (
        "<s>[INST] task text [/INST]\n1. Data Preprocessing:\n- fill\n2. Model Architecture:\n- SVC\n</s>"
    )
    body = instruction_body(prompt)
    assert body.startswith("1. Data Preprocessing") and "</s>" not in body
    sections = split_sections(body)
    assert "fill" in sections["preprocessing"] and "svc" in sections["model"]


def test_every_corpus_instruction_compiles(corpus: pd.DataFrame) -> None:
    """A tenth of the real corpus against three task shapes: parse never fails and the script is valid Python."""
    for prompt in corpus.prompt.iloc[::10]:
        for facts in (TITANIC, SPOOKY, BIKE):
            plan = parse_plan(prompt, facts)
            assert 1 <= len(plan.models) <= 3
            render_script(plan, facts)  # compile()s the script


def test_compiler_coder_result_is_journal_ready(corpus: pd.DataFrame) -> None:
    coder = CompilerCoder(time_budget_s=12.0)
    assert isinstance(coder, Coder) and coder.name == "compiler"
    result = coder.generate(_prompt(corpus, 11007759), SPOOKY)
    data = json.loads(json.dumps(result.to_dict()))  # the journal stores it as JSON
    assert data["attempt"] == 0 and data["plan"]["validation"]["time_budget_s"] == 12.0
    assert data["substitutions"][0]["replacement"] == "TF-IDF features + sentence embeddings + linear"
    assert "TIME_BUDGET_S = 12.0" in result.code
    compile(result.code, "solution.py", "exec")


def test_parse_cv_score() -> None:
    assert parse_cv_score("[cv] y: 0.5\ncv_score=0.812\n") == 0.812
    assert parse_cv_score("cv_score=0.1\ncv_score=0.2") == 0.2  # the last line wins
    assert parse_cv_score("cv_score=nan\n") is None and parse_cv_score("no score") is None
    assert parse_cv_score("cv_score=abc\n") is None
