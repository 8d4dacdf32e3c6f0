"""End to end on the 9 dev tasks with data: prepare_task -> compiled script -> Sandbox -> grade.

The compiler's default plan (`baseline_gbdt`) must give a valid submission on every task, within a minute of CPU,
and beat the constant baseline; instruction-driven plans (real corpus instructions with BERT, EfficientNet,
XGBoost, a random forest, and garbage) must give valid submissions too. Runs two tasks at a time.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from src.pipeline.code.base import parse_cv_score
from src.pipeline.code.compiler import CompilerCoder, render_baseline_gbdt
from src.sandbox import Sandbox
from src.solutions.providers import BUILTIN_DIR
from src.tasks import get_metric, grade, load_task, prepare_task

DEV_TASKS = [
    "titanic",
    "spaceship-titanic",
    "house-prices-advanced-regression-techniques",
    "playground-series-s3e22",
    "playground-series-s3e18",
    "bike-sharing-demand",
    "spooky-author-identification",
    "detecting-insults-in-social-commentary",
    "nomad2018-predict-transparent-conductors",
]
# (task, kaggle_id of a real corpus instruction or None for garbage): unavailable models and odd inputs
INSTRUCTED = [
    ("detecting-insults-in-social-commentary", 11007759),  # BERT (Keras, TPU) -> TF-IDF + embeddings + linear
    ("playground-series-s3e22", 5692577),  # EfficientNetB3 + pseudo labels -> substitution
    ("nomad2018-predict-transparent-conductors", 2104212),  # XGBoost -> LightGBM
    ("spaceship-titanic", 1007734),  # LightGBM (dart) + grid search, holdout validation
    ("bike-sharing-demand", None),  # garbage from a tiny random model -> default plan
]
GARBAGE = "Model ▁archi ##tect <unk> lay lay the the 0. :: data data é } pre- - -\n" * 20


@pytest.fixture(scope="module")
def prepared(kaggle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = tmp_path_factory.mktemp("cache")
    return {slug: prepare_task(load_task(kaggle_dir, slug), cache, seed=0) for slug in DEV_TASKS}


def _run(code: str, task: Any, where: Path) -> tuple[Any, Any]:
    where.mkdir(parents=True, exist_ok=True)
    script = where / "solution.py"
    script.write_text(code)
    result = Sandbox(timeout_s=300).run(script, task.public_dir, where / "work")
    graded = grade(task, where / "work" / "submission.csv") if result.status == "ok" else None
    return result, graded


def test_default_plan_on_every_dev_task(prepared: dict[str, Any], tmp_path: Path) -> None:
    constant_code = (BUILTIN_DIR / "baseline_constant.py").read_text()
    jobs = [(slug, "gbdt") for slug in DEV_TASKS] + [(slug, "constant") for slug in DEV_TASKS]

    def run(job: tuple[str, str]) -> tuple[str, str, Any, Any]:
        slug, which = job
        task = prepared[slug]
        facts = json.loads((task.public_dir / "task.json").read_text())
        code = render_baseline_gbdt(facts) if which == "gbdt" else constant_code
        return (slug, which, *_run(code, task, tmp_path / which / slug))

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, jobs))
    rows, constant = [], {}
    for slug, which, result, graded in outcomes:
        assert result.status == "ok", f"{slug} {which}: {result.stderr_tail[-3000:]}"
        assert graded.valid, f"{slug} {which}: {graded.reason}"
        if which == "constant":
            constant[slug] = graded.score
            continue
        cv = parse_cv_score(result.stdout_tail)
        assert cv is not None, result.stdout_tail
        assert result.cpu_time_s is None or result.cpu_time_s < 60, f"{slug}: {result.cpu_time_s} s of CPU"
        rows.append(
            {
                "task": slug,
                "seconds": result.duration_s,
                "cpu_s": result.cpu_time_s,
                "cv": cv,
                "score": graded.score,
            }
        )
    for row in rows:  # the fixed pipeline must beat predicting the prior / the mean, on every task
        metric = get_metric(prepared[row["task"]].metric)
        assert metric.better(row["score"], constant[row["task"]]), (row, constant[row["task"]])
    print(
        "\n" + pd.DataFrame(rows).assign(constant=[constant[r["task"]] for r in rows]).to_string(index=False)
    )


def test_instruction_driven_plans(prepared: dict[str, Any], corpus_csv: Path, tmp_path: Path) -> None:
    corpus = pd.read_csv(corpus_csv)
    coder = CompilerCoder(time_budget_s=15.0)

    def run(job: tuple[str, int | None]) -> tuple[str, Any, Any, Any]:
        slug, kaggle_id = job
        text = (
            GARBAGE if kaggle_id is None else str(corpus.loc[corpus.kaggle_id == kaggle_id, "prompt"].iloc[0])
        )
        task = prepared[slug]
        facts = json.loads((task.public_dir / "task.json").read_text())
        code = coder.generate(text, facts)
        return (slug, code, *_run(code.code, task, tmp_path / slug))

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = {slug: rest for slug, *rest in pool.map(run, INSTRUCTED)}
    for slug, (_, result, graded) in outcomes.items():
        assert result.status == "ok", f"{slug}: {result.stderr_tail[-3000:]}"
        assert graded.valid, f"{slug}: {graded.reason}"
        assert parse_cv_score(result.stdout_tail) is not None
    insults = outcomes["detecting-insults-in-social-commentary"][0]
    assert any(
        s["replacement"] == "TF-IDF features + sentence embeddings + linear" for s in insults.substitutions
    )
    assert "sentence embeddings of" in outcomes["detecting-insults-in-social-commentary"][1].stdout_tail
    assert any(
        s["requested"].startswith("convolutional")
        for s in outcomes["playground-series-s3e22"][0].substitutions
    )
    assert any(
        s["requested"].startswith("XGBoost")
        for s in outcomes["nomad2018-predict-transparent-conductors"][0].substitutions
    )
    assert outcomes["spaceship-titanic"][0].plan["validation"]["scheme"] == "holdout"
    assert outcomes["bike-sharing-demand"][0].plan["models"][0]["family"] == "lightgbm"
