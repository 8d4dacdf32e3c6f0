"""A user's own task, alone in its data dir (issue 29): `src.task init`, validation with one-line messages,
`tasks=<slug>`, and both generate modes (predict: fit on all rows, predict the user's test file, rerun alone)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from sklearn.datasets import load_breast_cancer

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.evaluate import evaluate, wanted_tasks
from src.task import init_task, main
from src.tasks.registry import load_task

ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
FAST = ["llm=scripted", "llm.default_reply=''", "search.budget_s=30", "search.max_nodes=3", "logger=none"]


@pytest.fixture()
def user_files(tmp_path: Path) -> tuple[Path, Path]:
    """A bundled scikit-learn dataset as a user brings it: a labelled CSV and an unlabelled one to predict."""
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "benign"})
    frame.insert(0, "id", range(len(frame)))
    train, test = tmp_path / "labelled.csv", tmp_path / "to_predict.csv"
    frame.iloc[:460].to_csv(train, index=False)
    frame.iloc[460:].drop(columns="benign").to_csv(test, index=False)
    return train, test


def test_init_infers_the_task_and_prints_the_commands(user_files, tmp_path: Path, capsys) -> None:
    train, test = user_files
    folder = tmp_path / "data" / "tumours"
    assert main(["init", str(folder), "--train", str(train), "--test", str(test), "--target", "benign"]) == 0
    facts = json.loads((folder / "task.json").read_text())
    assert facts["task_type"] == "binary_classification" and facts["metric"] == "roc_auc"
    assert facts["id_column"] == "id" and facts["higher_is_better"] is True
    assert (folder / "raw" / "train.csv").resolve() == train.resolve()  # linked, not copied
    out = capsys.readouterr().out
    assert f"python -m src.generate task={folder.resolve()} mode=predict" in out
    assert (
        f"python -m src.evaluate paths.data_dir={folder.parent.resolve()} tasks=tumours solution=generate"
        in out
    )
    task = load_task(folder.parent, "tumours", overrides_dir=None)  # what init wrote loads as it is
    assert task.targets == ["benign"]
    regression = init_task(tmp_path / "data" / "radius", train, "mean radius", metric=None)
    assert regression["task_type"] == "regression" and regression["metric"] == "rmse"


def test_init_refuses_bad_input_with_one_line(user_files, tmp_path: Path, capsys) -> None:
    train, _ = user_files
    assert main(["init", str(tmp_path / "x"), "--train", str(train), "--target", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "target column 'nope' is not in" in err and "mean radius" in err
    assert main(["init", str(tmp_path / "y"), "--train", str(tmp_path / "missing.csv"), "--target", "a"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(PipesynthError, match="unknown metric 'kappa'"):
        init_task(tmp_path / "z", train, "benign", metric="kappa")


def _write_task(folder: Path, **facts: object) -> None:
    (folder / "raw").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": range(20), "x": range(20), "y": [0, 1] * 10}).to_csv(
        folder / "raw" / "train.csv", index=False
    )
    base = {"title": "T", "data_type": "tabular", "task_type": "binary_classification", "targets": ["y"],
            "metric": "accuracy", "higher_is_better": True, "id_column": "id"}  # fmt: skip
    (folder / "task.json").write_text(json.dumps({**base, **facts}))


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("task_type", "classification", "binary_classification"), ("data_type", "images", "time_series")],
)
def test_unknown_values_name_the_allowed_ones_and_the_fix_works(
    tmp_path: Path, key: str, value: str, allowed: str
) -> None:
    folder = tmp_path / "t"
    _write_task(folder, **{key: value})
    with pytest.raises(PipesynthError, match=f"unknown {key} '{value}'") as err:
        load_task(tmp_path, "t", overrides_dir=None)
    assert allowed in str(err.value) and "\n" not in str(err.value)
    _write_task(folder, **{key: allowed})  # applying the fix: one of the allowed values
    assert getattr(load_task(tmp_path, "t", overrides_dir=None), key) == allowed


def test_an_empty_description_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_task(tmp_path / "t")
    (tmp_path / "t" / "description.md").write_text("  \n")
    with caplog.at_level(logging.WARNING):
        load_task(tmp_path, "t", overrides_dir=None)
    assert any("has no description" in r.message and "empty" in r.message for r in caplog.records)


def test_tasks_takes_a_plain_slug_and_any_folder_of_the_data_dir(
    user_files, tmp_path: Path, shared_dir: Path
) -> None:
    assert wanted_tasks("titanic") == ["titanic"] and wanted_tasks("a,b") == ["a", "b"]
    assert wanted_tasks(["titanic"]) == ["titanic"] and wanted_tasks(None) == []
    train, test = user_files
    data = tmp_path / "data"
    init_task(data / "tumours", train, "benign", test=test)
    overrides = [f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                 f"paths.data_dir={data}", f"paths.shared_dir={shared_dir}", "progress=false", "show_table=false",
                 "logger=none", "name=mine/test", "solution=baseline_gbdt"]  # fmt: skip
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate", overrides=[*overrides, "tasks=tumours"]
        )  # not in the dev suite, no brackets
        missing = compose("evaluate", overrides=[*overrides, "tasks=[tumors]"])
    record = evaluate(cfg)["records"][0]
    assert record["task"] == "tumours" and record["status"] == "ok" and record["score"] > 0.95
    with pytest.raises(PipesynthError, match=r"tasks \['tumors'\] have no folder") as err:
        evaluate(missing)
    assert "['tumours']" in str(err.value)  # the folders that are there


def test_generate_predict_mode_fits_all_rows_and_reruns_standalone(user_files, tmp_path: Path) -> None:
    train, test = user_files
    data = tmp_path / "data"
    init_task(data / "tumours", train, "benign", test=test)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "src.generate", f"task={data / 'tumours'}", "mode=predict",
         f"paths.output_dir={run}", f"paths.cache_dir={tmp_path / 'cache'}", *FAST],
        cwd=REPO_ROOT, capture_output=True, text=True, env=ENV, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rerun standalone:" in proc.stdout
    submission = pd.read_csv(run / "submission.csv")
    expected_ids = pd.read_csv(test)["id"]
    assert submission["id"].tolist() == expected_ids.tolist()  # the user's own test rows, every one
    assert submission["benign"].between(0, 1).all()
    public_train = pd.read_csv(run / "data" / "train.csv")
    assert len(public_train) == 460  # fitted on every labelled row, none held out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rerun = subprocess.run(
        [sys.executable, str(run / "solution.py"), "--data", str(run / "data")],
        cwd=elsewhere, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    again = pd.read_csv(elsewhere / "submission.csv")
    pd.testing.assert_frame_equal(again, submission)
    # evaluate mode (the default) on the same folder holds out a test split as before
    proc = subprocess.run(
        [sys.executable, "-m", "src.generate", f"task={data / 'tumours'}", f"paths.output_dir={tmp_path / 'ev'}",
         f"paths.cache_dir={tmp_path / 'cache'}", *FAST],
        cwd=REPO_ROOT, capture_output=True, text=True, env=ENV, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "ev" / "submission.csv").exists() and "validation_roc_auc=" in proc.stdout


def test_predict_mode_without_a_test_file_is_one_clear_error(tmp_path: Path) -> None:
    from src.generate import resolve_public_dir

    _write_task(tmp_path / "data" / "t")
    with pytest.raises(PipesynthError, match="mode=predict needs task 't''s unlabelled test file") as err:
        resolve_public_dir(str(tmp_path / "data" / "t"), tmp_path / "data", tmp_path / "cache", predict=True)
    assert "--test FILE" in str(err.value)
