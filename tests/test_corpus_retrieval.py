"""CorpusIndex (nearest competitions), strip_names, vote_family, the embedding cache and the configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.config import REPO_ROOT
from src.corpus.contamination import Exclusion
from src.corpus.retrieval import (
    CorpusIndex,
    MiniLMEmbedder,
    Neighbour,
    TfidfEmbedder,
    load_index,
    strip_names,
    vote_family,
)
from src.errors import PipesynthError
from tests.conftest import SHARED_DIR

CORPUS = SHARED_DIR / "data" / "linguacodus" / "result_prompts_new.csv"

ROWS = pd.DataFrame(
    [
        (
            "house",
            "Predict house sale prices from lot size and rooms",
            "tabular data",
            "mse",
            1,
            "Model architecture:\n- LightGBM regressor, learning_rate=0.05, 'SalePrice' log target",
        ),
        (
            "house",
            "Predict house sale prices from lot size and rooms",
            "tabular data",
            "mse",
            2,
            "Model architecture:\n- Ridge regression alpha=10",
        ),
        (
            "flats",
            "Predict apartment rent prices from rooms and floor",
            "tabular data",
            "percentage_errors",
            1,
            "Model architecture:\n- random forest with 300 trees",
        ),
        (
            "tweets",
            "Classify tweets about disasters from their text",
            "text data",
            "f_score",
            1,
            "Model architecture:\n- TF-IDF + logistic regression",
        ),
        (
            "xrays",
            "Classify chest x-ray images for pneumonia",
            "image data",
            "auc",
            1,
            "Model architecture:\n- ResNet50 pretrained",
        ),
    ],
    columns=["competition", "description", "data_type", "metric_category", "rank", "instruction"],
)


def tfidf_index(**kwargs: object) -> CorpusIndex:
    return CorpusIndex(ROWS, TfidfEmbedder(), **kwargs)  # type: ignore[arg-type]


def test_nearest_orders_by_description_and_keeps_ranks() -> None:
    hits = tfidf_index().nearest("predict the sale prices of houses", "tabular", "mse", n=2)
    assert [h.competition for h in hits] == ["house", "flats"]
    first = hits[0]
    assert first.ranks == [1, 2] and first.families == ["gbdt", "linear"]
    assert first.data_type == "tabular data" and first.metric_category == "mse"
    assert hits[0].similarity > hits[1].similarity


def test_query_data_type_and_metric_move_the_ranking() -> None:
    query = "classify items"  # the description alone says little
    plain = tfidf_index(data_type_weight=0.0, metric_weight=0.0)
    boosted = tfidf_index(data_type_weight=0.5, metric_weight=0.3)
    assert boosted.nearest(query, "image", "auc", n=1)[0].competition == "xrays"
    assert boosted.nearest(query, "text", "f_score", n=1)[0].competition == "tweets"
    assert (
        plain.nearest(query, "image", "auc", n=1)[0].competition
        == plain.nearest(query, "text", "f_score", n=1)[0].competition
    )


def test_exclusions_at_build_and_per_query() -> None:
    index = tfidf_index(exclude=Exclusion(competitions={"house"}))
    assert "house" not in index.competitions
    hits = index.nearest("sale prices of houses", "tabular", "mse", n=10, exclude_competitions=["flats"])
    assert {h.competition for h in hits} == {"tweets", "xrays"}
    with pytest.raises(PipesynthError, match="no corpus rows"):
        tfidf_index(exclude=Exclusion(competitions=set(ROWS.competition)))


def test_majority_leaves_the_held_out_competition_out() -> None:
    index = tfidf_index()
    assert index.majority("tabular", "mse") == "gbdt"
    assert index.majority("tabular", "mse", exclude_competitions=["house"]) == "random_forest"


def test_strip_names_removes_task_specific_names_and_keeps_settings() -> None:
    text = (
        "- Drop 'PassengerId' and `Cabin`; read sales_train_evaluation.csv and train.csv\n"
        "- 'LGBMClassifier' with 'objective': 'multi:softprob', 'n_estimators': 500, activation 'relu'\n"
        "- fill `df_train` NaNs"
    )
    out = strip_names(text)
    for gone in ("PassengerId", "Cabin", "sales_train_evaluation.csv", "df_train"):
        assert gone not in out
    for kept in (
        "train.csv",
        "'LGBMClassifier'",
        "'multi:softprob'",
        "'n_estimators'",
        "'relu'",
        "'objective'",
    ):
        assert kept in out
    assert out.count("<name>") == 4
    hits = tfidf_index(strip_names=True).nearest("sale prices of houses", "tabular", "mse", n=1)
    assert "SalePrice" not in hits[0].instructions[0] and "LightGBM" in hits[0].instructions[0]
    assert (
        "SalePrice"
        in tfidf_index(strip_names=False).nearest("houses", "tabular", "mse", n=1)[0].instructions[0]
    )


def _neighbour(
    name: str, sim: float, families: list[str | None], texts: list[str] | None = None
) -> Neighbour:
    texts = texts or [f"Model architecture:\n- {f}" for f in families]
    return Neighbour(name, sim, "tabular data", "mse", texts, families)


def test_vote_weighs_ranks_similarity_and_majority() -> None:
    neighbours = [
        _neighbour(
            "a", 0.8, ["linear", "gbdt"], ["Model architecture:\n- Ridge alpha=3", "LightGBM num_leaves=15"]
        ),
        _neighbour(
            "b", 0.6, ["gbdt"], ["Model architecture:\n- LightGBM, learning_rate=0.03, num_leaves=63"]
        ),
    ]
    vote = vote_family(neighbours, majority=None, rank_weights=(1.0, 0.5), majority_weight=0.0)
    assert vote.ballots == {"gbdt": pytest.approx(0.4 + 0.6), "linear": pytest.approx(0.8)}
    assert vote.family == "gbdt" and vote.sources == ["b", "a"]
    # settings from the best ballot that states each parameter (b: 0.6 before a's rank 2: 0.4)
    assert vote.settings["learning_rate"] == pytest.approx(0.03) and vote.settings["num_leaves"] == 63
    # the corpus majority can tip it
    tipped = vote_family(neighbours, majority="linear", rank_weights=(1.0, 0.5), majority_weight=0.3)
    assert tipped.family == "linear" and tipped.ballots["linear"] == pytest.approx(1.1)
    # rank weights beyond the list ignore deeper ranks; no family anywhere -> None
    assert vote_family([_neighbour("c", 0.9, [None])], majority=None).family is None
    assert vote_family([], majority="cnn").family == "cnn"
    assert vote.as_dict()["family"] == "gbdt"


class CountingEmbedder:
    """A deterministic fake pretrained embedder that counts how many texts it encoded."""

    name = "counting"

    def __init__(self) -> None:
        self.encoded = 0

    def fit(self, texts: Sequence[str]) -> None:
        return None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        out = np.array([[len(t), t.count("e") + 1.0, 1.0] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_index_embeddings_are_cached_on_disk_by_content(tmp_path: Path) -> None:
    first = CountingEmbedder()
    CorpusIndex(ROWS, first, cache_dir=tmp_path)
    assert first.encoded == 4 and len(list(tmp_path.glob("counting-*.npy"))) == 1
    second = CountingEmbedder()
    again = CorpusIndex(ROWS, second, cache_dir=tmp_path)
    assert second.encoded == 0  # read from the cache
    again.nearest("houses", "tabular", "mse")
    assert second.encoded == 1  # only the query
    changed = ROWS.assign(description=ROWS.description + " (v2)")
    CorpusIndex(changed, second, cache_dir=tmp_path)
    assert second.encoded == 5 and len(list(tmp_path.glob("counting-*.npy"))) == 2


def retrieval_cfg(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(overrides=["+paths=default", f"+retrieval={name}", "+decide=vote", *overrides])
    return cfg


@pytest.mark.parametrize("name", ["none", "context", "candidates"])
def test_retrieval_configs_compose(name: str) -> None:
    cfg = retrieval_cfg(name)
    assert cfg.retrieval.mode == name
    assert cfg.retrieval.embedder._target_ == "src.corpus.retrieval.MiniLMEmbedder"
    assert list(cfg.retrieval.exclude_suites) == ["dev", "paper"]
    assert cfg.decide.mode == "vote" and len(cfg.decide.vote.rank_weights) == 3


def test_load_index_from_config_excludes_suites_and_the_evaluated_task(tmp_path: Path) -> None:
    cfg = retrieval_cfg(
        "context",
        "retrieval/embedder=tfidf",
        f"retrieval.cache_dir={tmp_path}",
        "retrieval.exclude_suites=[]",
    )
    index = load_index(cfg.retrieval, evaluated=["spooky-author-identification"])
    assert index.exclusion.report == {"spooky-author-identification": 14}
    assert len(index.competitions) == 90
    full = load_index(cfg.retrieval)
    assert len(full.competitions) == 91
    default = load_index(retrieval_cfg("context", "retrieval/embedder=tfidf").retrieval)
    assert sum(default.exclusion.report.values()) == 136 and len(default.competitions) == 88


@pytest.mark.slow
def test_minilm_from_the_wheel_embeds_and_retrieves() -> None:
    embedder = MiniLMEmbedder()
    vectors = embedder.encode(["predict house prices", "forecast the price of homes", "classify dog images"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    rows = pd.DataFrame(ROWS)
    index = CorpusIndex(rows, embedder, data_type_weight=0.0, metric_weight=0.0)
    assert index.nearest("what will a home sell for", "tabular", "mse", n=1)[0].competition == "house"
    assert index.nearest("pneumonia in radiographs", "image", "auc", n=1)[0].competition == "xrays"
