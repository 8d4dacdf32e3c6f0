"""Code4ML tables -> ranked examples: direction-aware ranks, top-k before extraction, failures counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.corpus.code4ml import CELL_MARKER, Code4MLSource, InstructionExtractor, load_code4ml
from src.corpus.extract_static import StaticExtractor
from src.errors import PipesynthError

LGBM_BLOCKS = [
    "import pandas as pd\nimport lightgbm as lgb\ntrain = pd.read_csv('../input/train.csv')",
    "%matplotlib inline\ntrain = train.fillna(0)\nmodel = lgb.LGBMRegressor(n_estimators=500, learning_rate=0.05)",
    "model.fit(X, y, eval_set=[(Xv, yv)], callbacks=[lgb.early_stopping(50)])",
]


def write_tables(root: Path, *, comps: list[dict] | None = None, kernels: list[dict] | None = None) -> Path:
    """A small Code4ML fixture in the real schema (extra columns, as in the real tables, are ignored)."""
    comps = comps or [
        {"comp_name": "house-prices", "description": "Predict sale prices.", "data_type": "tabular data", "metric": "mse", "title": "House"},
        {"comp_name": "churn", "description": "Predict churn.", "data_type": "tabular data", "metric": "auc", "title": "Churn"},
        {"comp_name": "game", "description": "Win the game.", "data_type": "tabular data", "metric": "points", "title": "Game"},
    ]  # fmt: skip
    kernels = kernels or [
        {"kernel_id": 1, "comp_name": "house-prices", "score": 0.30},
        {"kernel_id": 2, "comp_name": "house-prices", "score": 0.10},  # lowest error: rank 1
        {"kernel_id": 3, "comp_name": "house-prices", "score": 0.20},
        {"kernel_id": 4, "comp_name": "house-prices", "score": 0.20},  # tie with 3: both rank 2
        {"kernel_id": 5, "comp_name": "churn", "score": 0.70},
        {"kernel_id": 6, "comp_name": "churn", "score": 0.90},  # highest AUC: rank 1
        {"kernel_id": 7, "comp_name": "churn", "score": None},  # unscored
        {"kernel_id": 8, "comp_name": "game", "score": 100},
        {"kernel_id": 9, "comp_name": "unknown-comp", "score": 1.0},
        {"kernel_id": 10, "comp_name": "churn", "score": 0.80},  # has no code blocks
    ]
    blocks = []
    for kernel in (1, 2, 3, 4, 5, 6, 7, 8, 9):
        for block_id, code in enumerate(LGBM_BLOCKS):
            blocks.append({"kernel_id": kernel, "code_block_id": block_id, "code_block": code})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(comps).to_csv(root / "competitions_meta.csv", index=False)
    pd.DataFrame(kernels).to_csv(root / "kernels_meta.csv", index=False)
    # shuffled on purpose: blocks are ordered by code_block_id, not by file order
    pd.DataFrame(blocks).sample(frac=1.0, random_state=0).to_csv(root / "code_blocks.csv", index=False)
    return root


class RecordingExtractor:
    """Stands in for the LLM extractor (Figure 3): records the code it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def extract(self, code: str) -> str:
        self.seen.append(code)
        return "Data preprocessing:\n- fill\nModel architecture:\n- gbm\nModel training:\n- fit"


def test_ranks_follow_the_metric_direction(tmp_path: Path) -> None:
    ds, report = load_code4ml(write_tables(tmp_path), StaticExtractor())
    rank = dict(zip(ds["kernel_id"], ds["rank"], strict=True))
    assert rank["2"] == 1 and rank["3"] == rank["4"] == 2 and rank["1"] == 4  # mse: lower is better
    # auc: higher is better; kernel 10 (0.80, no code) still holds rank 2: ranks come from all scored kernels
    assert rank["6"] == 1 and rank["5"] == 3 and "10" not in rank
    row = ds[ds["kernel_id"].index("2")]
    assert (row["competition"], row["description"], row["metric_category"]) == (
        "house-prices",
        "Predict sale prices.",
        "mse",
    )
    assert row["is_complete"] and "LGBMRegressor(n_estimators=500, learning_rate=0.05)" in row["architecture"]
    assert "early_stopping(50)" in row["training"]
    # unscored, orphan and code-less kernels are counted with reasons, never silently dropped
    assert report.failed == 3 and report.total == 10
    assert dict(report.failures) == {
        "7": "no score",
        "9": "competition 'unknown-comp' is not in competitions_meta.csv",
        "10": "no code blocks in code_blocks.csv",
    }


def test_top_k_and_exclusions_apply_before_extraction(tmp_path: Path) -> None:
    extractor = RecordingExtractor()
    assert isinstance(extractor, InstructionExtractor)
    ds, _ = load_code4ml(write_tables(tmp_path), extractor, top_k=2, exclude_metric_categories=["points"])
    # churn's top 2 are kernels 6 and 10, and 10 has no code; house-prices' are 2 and 3 (3 wins the tie with 4)
    assert sorted(zip(ds["competition"], ds["kernel_id"], ds["rank"], strict=True)) == [
        ("churn", "6", 1), ("house-prices", "2", 1), ("house-prices", "3", 2),
    ]  # fmt: skip
    assert len(extractor.seen) == 3  # only the kept kernels were extracted
    code = extractor.seen[0]
    assert code.index("read_csv") < code.index("LGBMRegressor") < code.index("early_stopping")
    assert code.count(CELL_MARKER) == len(LGBM_BLOCKS) - 1


def test_extractor_errors_are_counted_per_kernel(tmp_path: Path) -> None:
    class Broken:
        def extract(self, code: str) -> str:
            raise RuntimeError("model returned nothing")

    ds, report = load_code4ml(write_tables(tmp_path), Broken())
    assert len(ds) == 0 and report.failed == 10
    assert report.reasons["extractor failed: RuntimeError: model returned nothing"] == 7


def test_source_object_from_config_values(tmp_path: Path) -> None:
    source = Code4MLSource(write_tables(tmp_path), StaticExtractor(), metric_categories=None, top_k=1)
    ds, _ = source.load()
    assert sorted(ds["kernel_id"]) == ["2", "6", "8"]
    with pytest.raises(PipesynthError, match="without extract"):
        Code4MLSource(tmp_path, extractor=object())  # type: ignore[arg-type]


def test_unknown_metric_category_is_one_clear_error(tmp_path: Path) -> None:
    comps = [{"comp_name": "c", "description": "d", "data_type": "tabular data", "metric": "weird_metric"}]
    root = write_tables(tmp_path, comps=comps, kernels=[{"kernel_id": 1, "comp_name": "c", "score": 1.0}])
    with pytest.raises(PipesynthError, match="unknown metric category 'weird_metric'") as err:
        load_code4ml(root, StaticExtractor())
    assert "conf/metric_categories/code4ml.yaml" in str(err.value) and "fix:" in str(err.value)


def test_missing_column_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    root = write_tables(tmp_path)
    pd.DataFrame({"kernel_id": [1], "comp_name": ["churn"]}).to_csv(root / "kernels_meta.csv", index=False)
    with pytest.raises(PipesynthError, match=r"kernels_meta.csv' lacks column\(s\) \['score'\]"):
        load_code4ml(root, StaticExtractor())
    write_tables(root)
    (root / "code_blocks.csv").unlink()
    with pytest.raises(PipesynthError, match="code_blocks.csv' does not exist") as err:
        load_code4ml(root, StaticExtractor())
    assert "data.source.root" in str(err.value)
