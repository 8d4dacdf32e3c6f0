"""Predict mode: the chosen pipeline, fitted on every labelled row, writes submission.csv for the user's test.

    python -m src.generate task=<folder> mode=predict
    # -> <run>/solution.py, <run>/submission.csv, <run>/data/ (the prepared inputs the script reads)
    cd <run> && python solution.py --data data        # reruns it standalone, writes ./submission.csv

The public folder comes from `prepare_task(..., predict=True)`: train = all labelled rows, test = raw/test.csv.
Generation runs on it as in evaluate mode (inner validation inside the public train); then the chosen script
runs once more in the sandbox on the whole public folder, and its submission is copied beside solution.py.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Any

from src.errors import PipesynthError
from src.sandbox.inputs import overlay_inputs

# Put at the top of the saved solution.py: `--data <folder>` runs the script on another folder's files.
STANDALONE_PROLOGUE = """
# --- pipesynth: `python solution.py --data <folder>` reads <folder> (train.csv, test.csv,
# sample_submission.csv, task.json) as ./input/ and writes ./submission.csv in the current folder
import os as _os
import sys as _sys

if "--data" in _sys.argv:
    _data = _os.path.abspath(_sys.argv[_sys.argv.index("--data") + 1])
    _sys.argv = _sys.argv[:1]
    if _os.path.islink("input"):
        _os.unlink("input")
    if _os.path.exists("input") and _os.path.realpath("input") != _data:
        raise SystemExit("./input exists and is not --data: run from another folder, or remove ./input")
    if not _os.path.exists("input"):
        _os.symlink(_data, "input")
# --- end of the pipesynth prologue
"""


def with_standalone_prologue(code: str) -> str:
    """The script with STANDALONE_PROLOGUE after its docstring and `from __future__` imports."""
    body = ast.parse(code).body
    line = 0
    for node in body:
        docstring = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if (docstring and node is body[0]) or future:
            line = int(node.end_lineno or 0)
            continue
        break
    lines = code.splitlines(keepends=True)
    return "".join([*lines[:line], STANDALONE_PROLOGUE, *lines[line:]])


def predict(result: Any, public_dir: Path, sandbox: Any) -> dict[str, Any]:
    """Run the chosen solution of `result` (a GenerationResult) on the whole public folder; write
    <run>/submission.csv, <run>/data/ and the standalone solution.py. Returns what it wrote."""
    out = Path(result.out_dir)
    if result.status == "failed":
        raise PipesynthError(
            f"no working solution for '{result.task}' to predict with (every run failed; see {result.journal_path})",
            "read the journal's last errors; try another model (llm=...) or coder, or a simpler task description",
        )
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    overlay_inputs(public_dir, data, result.derived_dir if result.derived_dir.is_dir() else None)
    for link in list(data.iterdir()):  # a folder the user can keep: real files, not links into the cache
        source = link.resolve()
        link.unlink()
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, link)
    script = out / "solution.py"
    script.write_text(with_standalone_prologue(script.read_text()))
    work = out / "predict_run"
    shutil.rmtree(work, ignore_errors=True)
    run = sandbox.run(script, data, work)
    submission = work / "submission.csv"
    if run.status != "ok" or not submission.is_file():
        raise PipesynthError(
            f"the chosen solution failed on all labelled rows ({run.status}: {run.message})",
            f"see {work}/sandbox.stderr.log; the evaluate-mode run of the same task shows whether it is the data",
        )
    shutil.copy2(submission, out / "submission.csv")
    return {"submission": str(out / "submission.csv"), "data": str(data), "seconds": run.duration_s}
