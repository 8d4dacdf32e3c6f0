"""Model families read from instructions (rules in src/corpus/families.yaml) and the corpus majority (Figure 2)."""

from __future__ import annotations

import pandas as pd
import pytest

from src.corpus.families import (
    best_ranked,
    families,
    family_of,
    family_phrase,
    family_table,
    majority_family,
)
from src.corpus.linguacodus import load_linguacodus
from src.errors import PipesynthError
from src.pipeline.code.compiler.parse import find_models
from tests.conftest import SHARED_DIR

CORPUS = SHARED_DIR / "data" / "linguacodus" / "result_prompts_new.csv"


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ("Model architecture:\n- LGBMClassifier with num_leaves=31", "gbdt"),
        ("Model architecture:\n- XGBoost regressor\nModel training:\n- 5 folds", "gbdt"),
        (
            "Data preprocessing:\n- a neural network embeds text\nModel architecture:\n- Bidirectional LSTM",
            "rnn",
        ),
        ("Model architecture:\n- A neural network with two LSTM layers and dense layers", "rnn"),
        ("Model architecture:\n- Keras Sequential model with Dense(128) layers", "mlp"),
        ("Model architecture:\n- EfficientNetB3 pretrained on imagenet", "cnn"),
        ("Model architecture:\n- fine-tune bert-base-uncased", "transformer"),
        ("Model architecture:\n- TfidfVectorizer then LinearSVC", "svm"),
        ("Model architecture:\n- LogisticRegression(C=4)", "linear"),
        ("Model architecture:\n- MultinomialNB", "naive_bayes"),
        ("Model architecture:\n- RandomForestClassifier(n_estimators=200)", "random_forest"),
        ("Model architecture:\n- KNeighborsClassifier", "knn"),
        ("The code uses Prophet for each store.", "statistical_ts"),
    ],
)
def test_family_of_reads_the_architecture_section_first(text: str, family: str) -> None:
    assert family_of(text) == family


def test_family_of_none_and_section_priority() -> None:
    assert family_of("") is None and family_of(None) is None
    assert family_of("Model architecture:\nThe code does not specify any model architecture.") is None
    # the whole text names LightGBM first, but the architecture section says random forest
    text = "Data preprocessing:\n- LightGBM feature importances pick columns\nModel architecture:\n- random forest"
    assert family_of(text) == "random_forest"


def test_every_family_phrase_is_recognised_by_family_of_and_the_compiler() -> None:
    for family in families():
        phrase = family_phrase(family)
        assert family_of(f"Model architecture:\n- {phrase}") == family, phrase
        assert find_models(phrase.lower()), f"the compiler does not recognise {phrase!r}"
    with pytest.raises(PipesynthError, match="unknown model family"):
        family_phrase("quantum")


def _rows(spec: list[tuple[str, str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(spec, columns=["competition", "data_type", "metric_category", "rank", "instruction"])


ROWS = _rows(
    [
        ("a", "tabular data", "auc", 1, "Model architecture: LightGBM"),
        ("a", "tabular data", "auc", 2, "Model architecture: random forest"),
        ("b", "tabular data", "auc", 1, "Model architecture: XGBoost"),
        ("c", "tabular data", "auc", 1, "Model architecture: logistic regression"),
        ("d", "tabular data", "mse", 1, "Model architecture: ridge regression"),
        ("e", "text data", "auc", 1, "Model architecture: LSTM"),
        ("f", "tabular data_time series", "mae", 1, "Model architecture: Prophet"),
    ]
)


def test_majority_family_by_cell_with_fallbacks_and_exclusion() -> None:
    assert majority_family(ROWS, "tabular", "auc") == "gbdt"  # a and b
    assert majority_family(ROWS, "tabular", "mse") == "linear"
    assert (
        majority_family(ROWS, "tabular", "auc", exclude_competitions=["a"]) == "gbdt"
    )  # b vs c: tie by name
    assert majority_family(ROWS, "tabular", "auc", exclude_competitions=["a", "b"]) == "linear"
    # an empty cell falls back to the data type (tabular: gbdt 2, linear 2 -> name order), then its first part
    assert majority_family(ROWS, "tabular", "r2_score") == "gbdt"
    assert majority_family(ROWS, "time_series", "mae") == "statistical_ts"
    assert majority_family(ROWS, "audio", "auc") is None
    # all ranks instead of rank 1: a's random forest counts too
    assert majority_family(ROWS, "tabular", "auc", top=None) == "gbdt"


def test_family_table_is_figure_2() -> None:
    table = family_table(ROWS)
    assert list(table.columns) == [
        "data_type",
        "metric_category",
        "family",
        "count",
        "named",
        "share",
        "competitions",
    ]
    cell = table[(table.data_type == "tabular") & (table.metric_category == "auc")].iloc[0]
    assert (cell.family, cell["count"], cell.named, cell.competitions) == ("gbdt", 2, 3, 3)
    assert cell.share == pytest.approx(2 / 3)
    assert set(table.data_type) == {"tabular", "text", "tabular+time_series"}


def test_bad_rows_get_a_clear_error() -> None:
    with pytest.raises(PipesynthError, match="lack column"):
        best_ranked(pd.DataFrame({"competition": ["a"]}))


def test_coverage_on_the_real_corpus() -> None:
    rows = load_linguacodus(CORPUS)[0].to_pandas()
    top = best_ranked(rows, 1)
    assert len(top) == 91
    # measured: 66 of 91 rank-1 instructions name a family; most of the rest only blend submission files
    assert top["family"].notna().sum() >= 60
    table = family_table(rows)
    image_auc = table[(table.data_type == "image") & (table.metric_category == "auc")].iloc[0]
    assert image_auc.family == "cnn"
