"""The pipeline serves the task's metric (issue 31): submissions of the metric's shape, its loss, a user metric.

Real data: Kaggle's horse-health task (playground-series-s3e22, three outcomes) graded by MAP@3 instead of its
micro-F1, and scikit-learn's bundled diabetes progression scores (binned into five ordinal ratings for QWK; as
they are for MAE and a user metric).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from sklearn.datasets import load_diabetes

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.pipeline.code.compiler import default_plan, render_script
from src.sandbox import Sandbox
from src.tasks.grading import grade
from src.tasks.prepare import prepare_task
from src.tasks.registry import load_task

USER_METRIC = '''
import numpy as np


def within_ten(y_true, y_pred):
    """Share of predictions within 10 % of the truth (a user's own metric)."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(np.mean(np.abs(y_pred - y_true) <= 0.1 * np.abs(y_true)))
'''


def _diabetes_task(root: Path, slug: str, metric: str, higher: bool, ordinal: bool = False) -> Path:
    data = load_diabetes(as_frame=True).frame
    target = data.pop("target")
    if ordinal:  # five ordered ratings of disease progression
        target = pd.qcut(target, 5, labels=[1, 2, 3, 4, 5]).astype(int)
    data.insert(0, "id", np.arange(len(data)))
    data["progression"] = target
    folder = root / slug
    (folder / "raw").mkdir(parents=True)
    data.to_csv(folder / "raw" / "train.csv", index=False)
    facts = {"slug": slug, "title": "Diabetes progression", "data_type": "tabular", "id_column": "id",
             "task_type": "multiclass_classification" if ordinal else "regression", "targets": ["progression"],
             "metric": metric, "higher_is_better": higher}  # fmt: skip
    (folder / "task.json").write_text(json.dumps(facts))
    (folder / "description.md").write_text("Predict the disease progression one year after baseline.")
    return folder


def _horse_map3(root: Path, kaggle_dir: Path) -> Path:
    source = kaggle_dir / "playground-series-s3e22"
    folder = root / "horse-map3"
    folder.mkdir(parents=True)
    os.symlink(source / "raw", folder / "raw")  # read by path, never copied
    facts = json.loads((source / "task.json").read_text())
    facts |= {"slug": "horse-map3", "metric": "map@3", "higher_is_better": True}
    (folder / "task.json").write_text(json.dumps(facts))
    (folder / "description.md").write_text((source / "description.md").read_text())
    return folder


def _compile_and_grade(folder: Path, tmp_path: Path) -> tuple[Any, str, Any]:
    task = load_task(folder.parent, folder.name, overrides_dir=None)
    prepared = prepare_task(task, tmp_path / "cache", seed=0)
    facts = json.loads((prepared.public_dir / "task.json").read_text())
    code = render_script(default_plan(facts), facts)
    script = tmp_path / "solution.py"
    script.write_text(code)
    result = Sandbox(timeout_s=300).run(script, prepared.public_dir, tmp_path / "work")
    assert result.status == "ok", result.stderr_tail
    baseline = grade(prepared, prepared.public_dir / "sample_submission.csv")
    return grade(prepared, tmp_path / "work" / "submission.csv"), code, baseline


def test_map_at_3_gets_ranked_labels_from_class_probabilities(tmp_path: Path, kaggle_dir: Path) -> None:
    graded, code, sample = _compile_and_grade(_horse_map3(tmp_path / "data", kaggle_dir), tmp_path)
    assert "OUTPUT = 'topk'" in code and "TOP_K = 3" in code
    sub = pd.read_csv(tmp_path / "work" / "submission.csv")
    assert sub.iloc[:, 1].str.split().map(len).eq(3).all()  # three distinct outcomes per row, best first
    assert sub.iloc[:, 1].str.split().map(lambda labels: len(set(labels)) == 3).all()
    assert graded.valid and sample.valid
    assert graded.score > sample.score + 0.05  # the most frequent order of outcomes is the floor


def test_quadratic_weighted_kappa_writes_whole_number_ratings(tmp_path: Path) -> None:
    folder = _diabetes_task(tmp_path / "data", "diabetes-qwk", "quadratic_weighted_kappa", True, ordinal=True)
    graded, code, sample = _compile_and_grade(folder, tmp_path)
    assert "OUTPUT = 'label'" in code and "cohen_kappa_score" in code and "ORDINAL = True" in code
    assert graded.valid and graded.score > 0.3 and sample.score == pytest.approx(0.0)
    log = (tmp_path / "work" / "sandbox.stdout.log").read_text()
    assert "thresholds on the expected rank" in log  # both decodings compared on the out-of-fold rows
    # the most probable class alone (the decoding before thresholds) grades lower on the held-out test here
    task = load_task(folder.parent, folder.name, overrides_dir=None)
    prepared = prepare_task(task, tmp_path / "cache", seed=0)
    argmax = tmp_path / "argmax.py"
    argmax.write_text(code.replace("ORDINAL = True", "ORDINAL = False"))
    assert Sandbox(timeout_s=300).run(argmax, prepared.public_dir, tmp_path / "w2").status == "ok"
    assert graded.score > grade(prepared, tmp_path / "w2" / "submission.csv").score


def test_absolute_error_metrics_train_an_l1_loss(tmp_path: Path) -> None:
    folder = _diabetes_task(tmp_path / "data", "diabetes-mae", "median_absolute_error", False)
    graded, code, sample = _compile_and_grade(folder, tmp_path)
    assert "objective='l1'" in code  # LightGBM's regressor, the default family
    assert graded.valid and graded.score < sample.score


def test_a_metric_without_a_compiler_rule_falls_back_and_says_so(tmp_path: Path) -> None:
    folder = _diabetes_task(tmp_path / "data", "diabetes-user", "user_metric:within_ten", True)
    (folder / "user_metric.py").write_text(USER_METRIC)
    task = load_task(folder.parent, folder.name, overrides_dir=None)
    facts = json.loads((prepare_task(task, tmp_path / "cache", seed=0).public_dir / "task.json").read_text())
    plan = default_plan(facts)
    assert any(
        "user_metric:within_ten has no in-script implementation; cross-validation uses rmse" in n
        for n in plan.notes
    )
    assert "cross-validation uses rmse" in render_script(plan, facts)


def test_user_metric_errors_are_one_clear_line(tmp_path: Path) -> None:
    folder = _diabetes_task(tmp_path / "data", "no-module", "nowhere_metric:score", True)
    with pytest.raises(PipesynthError, match="module 'nowhere_metric' does not import") as err:
        load_task(folder.parent, folder.name, overrides_dir=None)
    assert "put nowhere_metric.py in the task folder" in str(err.value)
    folder = _diabetes_task(tmp_path / "data", "no-direction", "user_metric:within_ten", True)
    (folder / "user_metric.py").write_text(USER_METRIC)
    facts = json.loads((folder / "task.json").read_text())
    (folder / "task.json").write_text(json.dumps({**facts, "higher_is_better": "yes"}))
    with pytest.raises(PipesynthError, match="higher_is_better must be true or false") as err:
        load_task(folder.parent, folder.name, overrides_dir=None)
    assert '"higher_is_better": true (or false)' in str(err.value)
    from src.tasks.metrics import register_user_metric

    with pytest.raises(PipesynthError, match="no declared direction"):
        register_user_metric("user_metric:within_ten", None, folder)
    (folder / "user_metric.py").write_text("x = 1\n")
    (folder / "task.json").write_text(json.dumps(facts))
    with pytest.raises(PipesynthError, match="has no callable 'within_ten'"):
        load_task(folder.parent, folder.name, overrides_dir=None)


def test_user_metric_is_graded_rated_and_optimised_end_to_end(tmp_path: Path, shared_dir: Path) -> None:
    """baseline_gbdt and generate (tiny random model, a short search) on a task graded by its own metric."""
    from src.evaluate import evaluate
    from src.pipeline.journal import Journal

    data = tmp_path / "data"
    folder = _diabetes_task(data, "diabetes-user", "user_metric:within_ten", True)
    (folder / "user_metric.py").write_text(USER_METRIC)
    pd.DataFrame({"rank": [1, 2, 3, 4], "score": [0.412, 0.305, 0.201, 0.104]}).to_csv(
        folder / "leaderboard.csv", index=False
    )
    records = {}
    for solution in (
        ["solution=baseline_gbdt"],
        [
            "solution=generate",
            "model@solution.llm.model=tiny_llama",
            "solution.llm.adapter=null",
            "solution.llm.device=cpu",
            "solution.k=1",
            "solution.max_tokens=16",
            "solution.max_resample=0",
            "solution.search.max_nodes=3",
            "solution.search.budget_s=60",
            "solution.search.node_time_budget_s=5",
            "solution.coder.time_budget_s=5",
        ],
    ):
        with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "evaluate",
                overrides=[
                    f"paths.output_dir={tmp_path / 'run'}",
                    f"paths.cache_dir={tmp_path / 'cache'}",
                    f"paths.data_dir={data}",
                    f"paths.shared_dir={shared_dir}",
                    "suite.name=mine",
                    "suite.tasks=[diabetes-user]",
                    "progress=false",
                    "show_table=false",
                    "logger=none",
                    "name=mine/test",
                    *solution,
                ],
            )
        record = evaluate(cfg)["records"][0]
        records[solution[0]] = record
        assert record["status"] == "ok", record
        assert record["metric"] == "user_metric:within_ten" and 0 < record["score"] <= 1
        assert record["rating"]["teams"] == 4 and record["rating"]["position"] is not None
    journal = Journal.load(records["solution=generate"]["solution_meta"]["journal"])
    assert journal.metric == "user_metric:within_ten"
    searched = [n.validation_score for n in journal.nodes if n.stage == "search" and n.status == "ok"]
    assert len(searched) >= 2 and all(0 <= v <= 1 for v in searched)  # out-of-fold, graded by within_ten
