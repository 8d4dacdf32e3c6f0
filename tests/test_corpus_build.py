"""build_corpus from composed Hydra configs: columns, split, filters, limits, both sources, clear errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from src.config import REPO_ROOT
from src.corpus.build import COLUMNS, build_corpus, build_corpus_with_report
from src.corpus.instruction import parse_instruction
from src.corpus.metric_categories import DEFAULT_PATH, load_metric_categories
from src.errors import PipesynthError
from src.tasks.metrics import get_metric


def corpus_cfg(*overrides: str, data: str = "linguacodus", prompt: str = "figure4") -> DictConfig:
    """The corpus-relevant groups as train.yaml composes them, without the model/trainer groups."""
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(
            overrides=[
                "+paths=default",
                f"+data={data}",
                f"+prompt={prompt}",
                "+metric_categories=code4ml",
                *overrides,
            ]
        )


def test_build_from_the_default_config() -> None:
    built = build_corpus_with_report(corpus_cfg())
    dd = built.dataset
    assert set(dd) == {"train", "validation"}
    for split in dd.values():
        assert tuple(split.column_names) == COLUMNS
    train, val = set(dd["train"]["competition"]), set(dd["validation"]["competition"])
    # contamination on by default: Titanic (99 rows), House Prices (23) and Spooky (14) are gone, 88 remain
    assert not train & val and len(val) == 9 and len(train) == 79
    assert len(dd["train"]) + len(dd["validation"]) == 1330 - 99 - 23 - 14
    assert max(dd["train"]["rank"]) == 35  # Titanic, the only competition ranked past 75, is excluded
    row = dd["train"][0]
    assert row["prompt"].startswith("[INST] Get the main information") and row["prompt"].endswith("[/INST]")
    assert row["completion"] == " " + row["instruction"]
    stats = built.stats()
    assert stats["corpus/parse_full"] == 1030 and stats["corpus/after_top_k"] == 1194
    assert stats["corpus/contamination_rows_removed"] == 136 and stats["corpus/contamination/titanic"] == 99


OVERRIDES = (
    "data.filters.data_types=[text]",
    "data.filters.require_complete=true",
    "data.filters.top_k=5",
    "data.limit.train=20",
    "data.limit.validation=3",
    "data.split.validation_fraction=0.2",
)


def test_filters_and_limits_from_overrides() -> None:
    cfg = corpus_cfg(*OVERRIDES)
    full = build_corpus(corpus_cfg(*[o for o in OVERRIDES if "limit" not in o]))
    # top-k counts usable rows: at most 5 per competition (their ranks may exceed 5 once others are dropped)
    counts = Counter([*full["train"]["competition"], *full["validation"]["competition"]])
    assert max(counts.values()) == 5
    dd = build_corpus(cfg)
    assert (len(dd["train"]), len(dd["validation"])) == (20, 3)
    for split in dd.values():
        assert all("text" in t for t in split["data_type"])
        assert all(parse_instruction(i).is_complete for i in split["instruction"])


def test_release_prompt_and_max_prompt_chars() -> None:
    dd = build_corpus(corpus_cfg("data.filters.max_prompt_chars=1500", prompt="linguacodus_release"))
    prompts = [*dd["train"]["prompt"], *dd["validation"]["prompt"]]
    assert prompts and all(len(p) <= 1500 for p in prompts)
    assert all(p.startswith("<s>[INST] <<SYS>>") for p in prompts)


def test_the_train_config_composes_and_builds() -> None:
    if not (REPO_ROOT / "conf" / "train.yaml").is_file():
        pytest.skip("conf/train.yaml is not there")
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data.limit.train=10", "data.limit.validation=4"])
    dd = build_corpus(cfg)
    assert (len(dd["train"]), len(dd["validation"])) == (10, 4)


def test_code4ml_source_from_config(tmp_path: Path) -> None:
    pd.DataFrame(
        [
            {"comp_name": f"c{i}", "description": f"Task {i}.", "data_type": "tabular data", "metric": m}
            for i, m in enumerate(["mae", "auc", "points"])
        ]
    ).to_csv(tmp_path / "competitions_meta.csv", index=False)
    kernels = [
        {"kernel_id": 10 * i + j, "comp_name": f"c{i}", "score": float(j)} for i in range(3) for j in range(4)
    ]
    pd.DataFrame(kernels).to_csv(tmp_path / "kernels_meta.csv", index=False)
    blocks = [
        {
            "kernel_id": k["kernel_id"],
            "code_block_id": 0,
            "code_block": f"from sklearn.linear_model import Ridge\nm = Ridge(alpha={k['score']})\nm.fit(X, y)",
        }
        for k in kernels
    ]
    pd.DataFrame(blocks).to_csv(tmp_path / "code_blocks.csv", index=False)
    cfg = corpus_cfg(
        f"data.source.root={tmp_path}",
        "data.filters.top_k=2",
        "data.split.validation_fraction=0.5",
        data="code4ml",
    )
    built = build_corpus_with_report(cfg)
    rows = built.dataset["train"].to_list() + built.dataset["validation"].to_list()
    by_comp = {(r["competition"], r["rank"]): r for r in rows}
    assert set(by_comp) == {("c0", 1), ("c0", 2), ("c1", 1), ("c1", 2)}  # points excluded; top 2 each
    assert "Ridge(alpha=0.0)" in by_comp[("c0", 1)]["instruction"]  # mae: the lowest score ranks 1
    assert "Ridge(alpha=3.0)" in by_comp[("c1", 1)]["instruction"]  # auc: the highest score ranks 1
    assert built.report.full == 4


def _csv(tmp_path: Path, prompt_text: str, columns: tuple[str, str] = ("prompt", "kaggle_id")) -> Path:
    path = tmp_path / f"corpus-{len(list(tmp_path.glob('*.csv')))}.csv"
    pd.DataFrame({columns[0]: [prompt_text], columns[1]: ["1"]}).to_csv(path, index=False)
    return path


REAL_LIKE = (
    "<s>[INST] Your objective is writing the first place instruction for solving this machine learning task. "
    "Task: Predict things\nThe tabular data data is used for the problem. The metric type is {metric} for the "
    "problem. Your response contains ... [/INST]\nData preprocessing:\n- a\nModel architecture:\n- b\nModel training:\n- c</s>"
)


def test_bad_inputs_end_with_one_clear_error(tmp_path: Path) -> None:
    cases = [
        (corpus_cfg(f"paths.corpus_path={tmp_path / 'missing.csv'}"), "does not exist"),
        (
            corpus_cfg(f"paths.corpus_path={_csv(tmp_path, 'x', ('text', 'kaggle_id'))}"),
            r"lacks column\(s\) \['prompt'\]",
        ),
        (
            corpus_cfg(f"paths.corpus_path={_csv(tmp_path, REAL_LIKE.format(metric='weird_metric'))}"),
            "unknown metric category 'weird_metric'",
        ),
        (
            corpus_cfg("data.filters.exclude_metric_categories=[custom loss]"),
            "unknown metric category 'custom loss'",
        ),
        (corpus_cfg("data.filters.data_types=[spreadsheet]"), "unknown data type"),
        (corpus_cfg("data.source._target_=src.corpus.nowhere.Source"), "cannot build cfg.data.source"),
        (corpus_cfg(prompt="chat"), "renders through a tokenizer's chat template and has none"),
        (corpus_cfg("data.split.validation_fraction=1.5"), "validation_fraction=1.5"),
    ]
    for cfg, message in cases:
        with pytest.raises(PipesynthError, match=message) as err:
            build_corpus(cfg)
        assert str(err.value).count(" — fix: ") == 1, str(err.value)


def test_metric_categories_from_config_and_from_file_agree() -> None:
    cfg = corpus_cfg()
    from_cfg, from_file = load_metric_categories(cfg.metric_categories), load_metric_categories(DEFAULT_PATH)
    assert dict(from_cfg) == dict(from_file) and len(from_file) == 19
    assert not from_file["mse"].higher_is_better and from_file["auc"].higher_is_better
    for cat in from_file.values():  # every graded metric named in the table exists in the metrics registry
        for name in filter(None, (cat.task_metric, *cat.other_task_metrics)):
            get_metric(name)


def test_every_kaggle_task_metric_maps_to_a_corpus_category(kaggle_dir: Path) -> None:
    cats = load_metric_categories()
    metrics = {json.loads(p.read_text())["metric"] for p in kaggle_dir.glob("*/task.json")}
    assert metrics
    mapped = {m: cats.category_for_task_metric(m) for m in metrics}
    assert None not in mapped.values(), mapped
    assert mapped.get("roc_auc", "auc") == "auc" and mapped.get("rmse", "mse") == "mse"
    for metric, category in mapped.items():  # and the directions agree
        assert cats[category].higher_is_better == get_metric(metric).higher_is_better


def test_yaml_configs_expose_the_documented_keys() -> None:
    for name in ("linguacodus", "code4ml"):
        data = OmegaConf.load(REPO_ROOT / "conf" / "data" / f"{name}.yaml")
        assert set(data) == {"name", "source", "contamination", "filters", "split", "limit"}
        assert list(data.filters.exclude_metric_categories) == ["points", "significance", "custom_loss"]
        assert data.filters.top_k == 75 and data.filters.dedup is True and data.filters.data_types is None
