"""Execution-guided refinement and the repair loop, with real sandbox runs on a small regression task.

A stub coder maps each instruction to a known script, so the test knows which option must win: the grader on
the validation split (carved from the public train) decides, under the metric's direction (rmse: lower wins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from src.corpus.instruction import parse_instruction
from src.pipeline.code.base import CodeResult
from src.pipeline.code.repair import PublicRunner, run_with_repair
from src.pipeline.instruct import Candidate
from src.pipeline.journal import Journal
from src.pipeline.refine import ExecutionRefine, NoRefine, RefineContext
from src.sandbox import Sandbox

HEAD = "import numpy as np, pandas as pd\ntrain = pd.read_csv('input/train.csv')\ntest = pd.read_csv('input/test.csv')\n"
SCRIPTS = {
    "mean": HEAD
    + "pd.DataFrame({'id': test.id, 'y': train.y.mean()}).to_csv('submission.csv', index=False)\n",
    "linear": HEAD
    + "a, b = np.polyfit(train.x, train.y, 1)\n"
    + "pd.DataFrame({'id': test.id, 'y': a * test.x + b}).to_csv('submission.csv', index=False)\n",
    "broken": HEAD + "raise ValueError('no model')\n",
    "wrong_columns": HEAD
    + "pd.DataFrame({'id': test.id, 'target': 0.0}).to_csv('submission.csv', index=False)\n",
}


class StubCoder:
    """instruction text -> SCRIPTS[text]; repair: `fixes[name]` or give up. Records what repair was told."""

    name = "stub"

    def __init__(self, fixes: dict[str, str] | None = None) -> None:
        self.fixes = fixes or {}
        self.repair_calls: list[Any] = []

    def generate(self, instruction_text: str, task_public_facts: dict[str, Any]) -> CodeResult:
        return CodeResult(code=SCRIPTS[instruction_text], plan={"script": instruction_text})

    def repair(
        self, previous: CodeResult, execution: Any, task_public_facts: dict[str, Any]
    ) -> CodeResult | None:
        self.repair_calls.append(execution)
        name = self.fixes.get(previous.plan["script"])
        if name is None:
            return None
        return CodeResult(code=SCRIPTS[name], plan={"script": name}, attempt=previous.attempt + 1)


class CountingSandbox(Sandbox):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.runs = 0

    def run(self, *args: Any, **kw: Any) -> Any:
        self.runs += 1
        return super().run(*args, **kw)


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A public task folder (no private part exists): y = 2x + 1 + noise, rmse."""
    root = tmp_path_factory.mktemp("toy") / "public"
    root.mkdir()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 300)
    pd.DataFrame({"id": range(300), "x": x, "y": 2 * x + 1 + rng.normal(0, 0.1, 300)}).to_csv(
        root / "train.csv", index=False
    )
    pd.DataFrame({"id": range(300, 350), "x": rng.uniform(0, 10, 50)}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": range(300, 350), "y": 11.0}).to_csv(root / "sample_submission.csv", index=False)
    facts = {
        "slug": "toy",
        "title": "Toy line",
        "data_type": "tabular",
        "task_type": "regression",
        "id_column": "id",
        "targets": ["y"],
        "submission_columns": ["y"],
        "metric": "rmse",
        "higher_is_better": False,
    }
    (root / "task.json").write_text(json.dumps(facts))
    (root / "description.md").write_text("Predict y from x.")
    return root


def _candidates(journal: Journal, names: list[str]) -> list[Candidate]:
    out = []
    for rank, name in enumerate(names, start=1):
        node = journal.add("instruction", rank=rank, instruction=name).finish("ok")
        out.append(Candidate(rank, name, parse_instruction(name), node.id, attempts=1))
    return out


def _ctx(public: Path, tmp_path: Path, names: list[str], coder: Any, sandbox: Any) -> RefineContext:
    journal = Journal("toy", "rmse", higher_is_better=False)
    facts = json.loads((public / "task.json").read_text())
    return RefineContext(
        facts=facts,
        description="Predict y from x.",
        candidates=_candidates(journal, names),
        journal=journal,
        public_dir=public,
        work_dir=tmp_path / "work",
        coder=coder,
        sandbox=sandbox,
        repair_rounds=1,
    )


def test_execution_refine_keeps_the_best_validation_score(public: Path, tmp_path: Path) -> None:
    sandbox = CountingSandbox(timeout_s=60)
    ctx = _ctx(public, tmp_path, ["broken", "mean", "linear", "mean"], StubCoder(), sandbox)
    refined = ExecutionRefine(validation={"folds": 2, "seed": 1}).refine(ctx)

    assert refined.rank == 3 and refined.text == "linear" and refined.validated
    assert refined.code.code == SCRIPTS["linear"]
    journal = ctx.journal
    codes = journal.by_stage("code")
    assert [n.status for n in codes] == ["error", "ok", "ok", "duplicate"]
    assert codes[3].meta["same_as"] == codes[1].id  # the same script ran once
    assert sandbox.runs == 1 + 2 + 2  # broken stops at fold 0; mean and linear run both folds
    mean, linear = codes[1].validation_score, codes[2].validation_score
    assert linear < 0.2 < mean  # rmse: the line fits to the noise, the mean is off by ~6
    assert refined.validation_score == linear and journal.best().id == codes[2].id
    assert len(codes[2].validation["scores"]) == 2 and codes[2].validation["split"] == "validation-kfoldx2"
    assert (
        journal.meta["validation"]["scheme"] == "kfold" and sum(journal.meta["validation"]["n_test"]) == 300
    )
    assert codes[0].execution["exc_type"] == "ValueError"
    assert "nothing left to repair" in codes[0].notes[-1]
    # the held-out folds are written under the work folder, from the public train only
    assert (tmp_path / "work" / "validation" / "fold1" / "private" / "answers.csv").is_file()


def test_no_refine_is_rank_one() -> None:
    journal = Journal("toy", "rmse", False)
    candidates = _candidates(journal, ["mean", "linear"])
    ctx = RefineContext({}, "", candidates, journal, Path("."), Path("."))
    refined = NoRefine().refine(ctx)
    assert (refined.text, refined.rank, refined.node_id, refined.code) == (
        "mean",
        1,
        candidates[0].node_id,
        None,
    )


def test_repair_loop_fixes_an_invalid_submission_and_is_bounded(public: Path, tmp_path: Path) -> None:
    facts = json.loads((public / "task.json").read_text())
    journal = Journal("toy", "rmse", False)
    root = journal.add("instruction", instruction="x").finish("ok")
    runner = PublicRunner(Sandbox(timeout_s=60), public, tmp_path / "runs")
    coder = StubCoder(fixes={"wrong_columns": "broken", "broken": "linear"})
    start = coder.generate("wrong_columns", facts)
    done = run_with_repair(coder, start, facts, runner, journal, root, max_rounds=3)
    assert done.outcome.ok and done.code.code == SCRIPTS["linear"]
    assert [(n.stage, n.status) for n in journal.nodes[1:]] == [
        ("code", "invalid"),
        ("repair", "error"),
        ("repair", "ok"),
    ]
    # the coder was told why: the grader-side reason for the invalid file, then the traceback
    invalid, error = coder.repair_calls
    assert invalid.status == "invalid" and "columns" in invalid.message and "target" in invalid.message
    assert error.status == "error" and "ValueError: no model" in error.traceback
    assert journal.nodes[3].parent == journal.nodes[2].id and journal.nodes[3].meta["repair_round"] == 2

    # a coder that keeps producing failing scripts gets exactly max_rounds repairs
    journal2 = Journal("toy", "rmse", False)
    looping = StubCoder(fixes={"broken": "broken"})
    done = run_with_repair(
        looping, looping.generate("broken", facts), facts, runner, journal2, None, max_rounds=2
    )
    assert not done.outcome.ok and [n.stage for n in journal2.nodes] == ["code", "repair", "repair"]
