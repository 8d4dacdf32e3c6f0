"""Budgets that hold (issue 28 item 4): the search ends within `budget_s` plus one node's length, and under the
task's deadline (generate's `budget_s`) it keeps time for the chosen script's graded run.

The scripts are the compiler's, run for real in the sandbox (no isolation) on a small synthetic task; every
draft of another model family first sleeps far past the budget, so only the hard stop can end the search in time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.pipeline.code.base import CodeResult
from src.pipeline.code.compiler import CompilerCoder, default_plan
from src.pipeline.journal import Journal
from src.pipeline.refine import Refined
from src.pipeline.search import Search
from src.pipeline.search.policy import SearchState, run_seconds
from src.sandbox import Sandbox
from tests.search_context import search_context

SLEEP_S = 120.0  # far past any budget below: a node that sleeps this long can only end by being killed


class SlowDraftsCoder(CompilerCoder):
    """The compiler, except that a script of another model family than the default sleeps first."""

    def from_plan(self, plan: Any, facts: dict[str, Any], attempt: int = 0) -> CodeResult:
        result = super().from_plan(plan, facts, attempt=attempt)
        if plan.models[0].family != default_plan(facts).models[0].family:
            result.code = f"import time\ntime.sleep({SLEEP_S})\n" + result.code
        return result


def small_task(root: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = (frame["a"] + 0.5 * rng.normal(size=n) > 0).astype(int)
    public = root / "public"
    public.mkdir(parents=True)
    frame.iloc[:240].to_csv(public / "train.csv", index=False)
    frame.iloc[240:].drop(columns="y").to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": frame["id"].iloc[240:], "y": 0}).to_csv(public / "sample_submission.csv", index=False)
    facts = {"slug": "synthetic", "title": "synthetic", "data_type": "tabular"}
    facts |= {"task_type": "binary_classification", "metric": "roc_auc", "higher_is_better": True}
    facts |= {"id_column": "id", "targets": ["y"], "submission_columns": ["y"]}
    (public / "task.json").write_text(json.dumps(facts))
    return public


def start(tmp_path: Path) -> tuple[Any, Refined]:
    public = small_task(tmp_path)
    coder = SlowDraftsCoder(time_budget_s=10)
    sandbox = Sandbox(isolation="none", timeout_s=600)
    ctx = search_context(public, tmp_path / "work", sandbox, coder)
    root = ctx.journal.add("instruction", instruction="start")
    return ctx, Refined(
        text="start", node_id=root.id, code=coder.from_plan(default_plan(ctx.facts), ctx.facts)
    )


def test_the_search_stops_within_its_budget_when_nodes_are_slow(tmp_path: Path) -> None:
    ctx, refined = start(tmp_path)
    search = Search(policy="tree", budget_s=15, max_nodes=10, workers=2, num_drafts=2, blend_size=0)
    began = time.perf_counter()
    chosen = search.search(ctx, refined)
    took = time.perf_counter() - began
    meta = ctx.journal.meta["search"]
    nodes = [n for n in ctx.journal.nodes if n.stage == "search"]
    root = nodes[0]
    # the limit, one node's overrun (the root's length, 10 s at least) and a few seconds to tear down
    assert took <= 15 + max(run_seconds(root), 10) + 10, (took, meta)
    slow = [n for n in nodes if n.meta.get("kind") == "draft"]
    assert slow and all(n.status == "timeout" for n in slow), [(n.meta.get("move"), n.status) for n in slow]
    assert chosen.validated and chosen.code_node_id in {root.id, meta["baseline"]}


def test_under_a_deadline_the_search_keeps_time_for_the_graded_run(tmp_path: Path) -> None:
    ctx, refined = start(tmp_path)
    search = Search(policy="tree", budget_s=300, max_nodes=10, workers=2, num_drafts=2, blend_size=0)
    began = time.perf_counter()
    deadline = began + 40
    search.search(ctx, refined, deadline=deadline)
    meta = ctx.journal.meta["search"]
    root = next(n for n in ctx.journal.nodes if n.stage == "search")
    assert meta["limit_s"] <= 40 - 2 * run_seconds(root) + 1  # the task's deadline, not budget_s, set it
    # the limit plus one node's overrun: the graded run still fits before the deadline
    assert time.perf_counter() - began <= meta["limit_s"] + max(run_seconds(root), 10) + 10
    assert time.perf_counter() + run_seconds(ctx.journal[meta["best"]]) <= deadline + 5


def test_a_node_too_slow_to_rerun_before_the_deadline_is_not_chosen() -> None:
    journal = Journal("t", "roc_auc", True)
    state = SearchState(full_rows=100, deadline=time.perf_counter() + 60)
    for seconds, score in ((5.0, 0.80), (300.0, 0.95)):
        node = journal.add("search")
        node.finish("ok", execution={"oof_rows": 100, "duration_s": seconds}, validation_score=score)
        state.nodes.append(node)
    search = Search(policy="tree")
    assert search._best(journal, state) is state.nodes[0]  # 0.95 would end 240 s past the task's budget
    state.deadline = None
    assert search._best(journal, state) is state.nodes[1]  # no deadline: the better score
    state.deadline = time.perf_counter() + 1  # nothing fits: the quickest to run, not nothing
    assert search._best(journal, state) is state.nodes[0]


def test_the_suite_notes_say_where_each_tasks_time_went() -> None:
    from src.evaluate import suite_notes

    meta = {
        "timings": {"instruct_s": 41.2, "refine_s": 9.0, "search_s": 250.4, "verify_s": 0.0, "total_s": 300.6}
    }
    record = {
        "task": "t",
        "seed": 0,
        "status": "ok",
        "solution_meta": meta,
        "execution": {"duration_s": 30.9},
    }
    assert (
        "t (seed 0) seconds: instruct 41s, refine 9s, search 250s, verify 0s, total 301s, final run 31s"
        in (suite_notes([record]))
    )
    assert not any("seconds:" in line for line in suite_notes([{**record, "solution_meta": {}}]))
