"""Search past the refined solution: an improvement loop over scripts, each scored on inner validation only.

    search = Search(policy="tree", budget_s=300, max_nodes=16)          # conf/search/{none,greedy,tree}.yaml
    refined = search.search(ctx, refined)                               # after refinement, in Pipeline.run

The policy follows AIDE's (`aide/agent.py`): draft until `num_drafts` drafts exist, debug a failed leaf while its
debug depth is below `max_debug_depth` (with probability `debug_prob`), else improve the best node. `greedy` is
the same loop without drafts or debugging (hill-climbing from the refined script); `none` returns the refined
solution untouched (today's behaviour; search is an ablation axis).

Moves. With the compiler coder every move is a plan edit (catalog/moves.yaml): a draft switches the model
family, an improvement edits one catalog hyperparameter group, a preprocessing step, the target transform or the
class weights, and an ensemble averages the models of the best nodes of different families. With an LLM coder the
LLM proposes a revised instruction from a summary of the journal (the nodes, their changes and scores) and the
coder writes its script.

Budget. The search's time is `budget_s`, or less when the task's own deadline (generate's `budget_s`, passed as
`deadline`) comes first: then one node's overrun and a root's length are kept back for the chosen script's
graded run. A node is not
started when the recent nodes' typical length would take the search past it, nor a move that turns sentence
embeddings on when the encoding alone would (estimated once per search by timing the scripts' encoder on a sample
of the task's text cells, src.pipeline.code.compiler.embedding_cost); `meta.search.skipped` in the journal names
such moves. A node still running one root's length past it is killed (a timeout), so the search ends at most one
node's length late. Under a deadline, the chosen node must be able to run again before it: a blend takes only the
members whose runs fit, and a node whose run would end past the deadline is not chosen.

Scores. `evaluation: oof` (compiler scripts): the script runs once on the full public files and writes
`oof_submission.csv`, its out-of-fold predictions of the public train rows (folds that mirror the task's split:
groups never straddle, time runs forward); the grader (src.tasks.grading) scores them against the public train
labels, which this process reads itself. `evaluation: holdout` (any script, the LLM coder's): the validation split
of src.pipeline.validation, graded on its held-out public rows. Private answers are never read. Every node is a
journal node (stage `search`) with its parent, its change (`meta.move`) and its validation score; the chosen
node is the best validation score under the metric's direction.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.errors import PipesynthError
from src.llm import ChatRequest
from src.pipeline.code.base import CodeResult
from src.pipeline.code.compiler.embedding_cost import encoding_seconds
from src.pipeline.code.compiler.plan import Plan, default_plan
from src.pipeline.code.llm import extract_code, task_summary
from src.pipeline.code.repair import (
    RunCache,
    RunOutcome,
    ValidationRunner,
    _finish,
    record_code,
    run_with_repair,
)
from src.pipeline.journal import Journal, Node, llm_usage
from src.pipeline.refine import RefineContext, Refined
from src.pipeline.search.blend import PARALLEL as BLEND_PARALLEL
from src.pipeline.search.blend import Member, blend_kind, fit_weights, render_blend, stack_score
from src.pipeline.search.blend_outputs import STACK_METHODS, combine_outputs, read_outputs, row_statistics
from src.pipeline.search.members import blend_candidates, same_rows_as_best, signature
from src.pipeline.search.moves import (
    Proposal,
    ensemble_plan,
    family_moves,
    has_text_pairs,
    improve_moves,
)
from src.pipeline.search.runner import DERIVED_CACHES, OOF_FILE, OofRunner
from src.pipeline.validation import build_validation_split
from src.sandbox.inputs import DERIVED_DIR, keep_derived
from src.tasks.metrics import get_metric

log = logging.getLogger(__name__)

POLICIES = ("none", "greedy", "tree")
MIN_OVERRUN_S = 10.0  # the hard stop's slack past the limit when the root ran faster than that
BLEND_METHODS = ("auto", "weights", *STACK_METHODS)
BLEND_WORDS = {"weights": "blend", "stack": "stack", "stack_gbdt": "gradient-boosted stack"}
EVALUATIONS = ("auto", "oof", "holdout")
BASELINE_MOVE = "the fixed baseline's plan (baseline_gbdt)"


def common_folds(plan: Plan, facts: dict[str, Any]) -> Plan:
    """`plan` (in place) cross-validated on the fixed baseline's folds and rows: every node is then scored on the
    same rows as the others and may be chosen (an instruction's "hold out 20 %" gives one fold, a fifth of the
    rows, and would leave its node and every draft from it ineligible)."""
    baseline = default_plan(facts).validation
    plan.validation.scheme, plan.validation.n_splits = baseline.scheme, baseline.n_splits
    plan.validation.holdout_fraction = baseline.holdout_fraction
    plan.validation.max_train_rows = baseline.max_train_rows
    return plan


def run_seconds(node: Node) -> float:
    """Wall seconds of a node's own run (a blend's: its members', `final_run_s`; they ran earlier in the search)."""
    if node.meta.get("final_run_s") is not None:
        return float(node.meta["final_run_s"])
    execution = node.execution
    runs = execution if isinstance(execution, list) else [execution]
    return float(sum(float(r.get("duration_s") or 0.0) for r in runs if isinstance(r, dict)))


def oof_rows(node: Node) -> int | None:
    """Rows a node's out-of-fold predictions covered (None: not an out-of-fold evaluation)."""
    execution = node.execution
    first = execution[0] if isinstance(execution, list) and execution else execution
    rows = first.get("oof_rows") if isinstance(first, dict) else None
    return int(rows) if rows is not None else None


@dataclass
class SearchState:
    """The search's bookkeeping beside the journal: its nodes, what each one has left to try."""

    nodes: list[Node] = field(default_factory=list)
    tried: dict[str, set[str]] = field(default_factory=dict)  # node id -> moves proposed from it
    seen_codes: set[str] = field(default_factory=set)
    drafts: int = 0
    duplicates: int = 0
    closing: bool = False  # the last round(s): time or nodes nearly spent
    ensembled: set[tuple[str, ...]] = field(default_factory=set)
    outputs: dict[str, Path] = field(default_factory=dict)  # node id -> the folder its run wrote into
    inert: set[str] = field(default_factory=set)  # feature moves that once changed nothing: not tried again
    encoding_s: float | None = None  # estimated one-thread seconds of sentence encoding (once asked)
    encoding_asked: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # move -> why it was not started
    baseline_asked: bool = False
    baseline_id: str | None = None  # the node that ran the fixed baseline's plan (or the one it duplicated)
    full_rows: int | None = (
        None  # labelled public rows: a node's out-of-fold file must cover all to be chosen
    )
    text_pairs: bool | None = None  # the public train has two columns of related text (None: not looked yet)
    limit_s: float = 0.0  # seconds the search may take (budget_s, or less under the task's deadline)
    deadline: float | None = None  # time.perf_counter() by which the chosen script's graded run must end too


class Search:
    """The improvement loop after refinement (see the module docstring). Settings: conf/search/*.yaml.

    budget_s: wall-clock seconds for the search (a node that would typically end later is not started);
    max_nodes: nodes at most, the root included; workers: nodes run at once (a new one starts as soon as one
    ends); num_drafts / debug_prob / max_debug_depth: AIDE's policy knobs (tree); ensemble_size: models in an ensemble node (0: no ensembles); blend_size: search nodes a
    blend may combine, whole solutions weighted on their out-of-fold predictions (0 or 1: no blends; oof
    evaluation only); blend_method: auto (the best of weights and both stacks on inner validation) | weights | stack (linear) |
    stack_gbdt (LightGBM over the members' probabilities and the rows' text statistics); diversify_prob:
    chance that an improvement goes to the best node of another kind of solution (tree); node_time_budget_s: CPU
    seconds of cross-validation a compiled node allows itself; min_gain: a node replaces the best only when it is
    better by more than this (relative to the best's score), so noise does not pick a change.
    """

    def __init__(
        self,
        name: str = "tree",
        policy: str = "tree",
        budget_s: float = 300.0,
        max_nodes: int = 16,
        workers: int = 1,
        num_drafts: int = 3,
        debug_prob: float = 0.5,
        max_debug_depth: int = 2,
        ensemble_size: int = 3,
        blend_size: int = 6,
        blend_method: str = "auto",
        blend_steps: int = 25,
        diversify_prob: float = 0.0,
        evaluation: str = "auto",
        node_time_budget_s: float | None = None,
        min_gain: float = 0.0,
        validation: dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 512,
        seed: int = 0,
        keep_work: bool = False,
    ) -> None:
        if policy not in POLICIES:
            raise PipesynthError(f"search.policy={policy!r} is not one of {POLICIES}", "use search=tree")
        if blend_method not in BLEND_METHODS:
            raise PipesynthError(
                f"search.blend_method={blend_method!r} is not one of {BLEND_METHODS}",
                "use blend_method: auto",
            )
        if evaluation not in EVALUATIONS:
            raise PipesynthError(
                f"search.evaluation={evaluation!r} is not one of {EVALUATIONS}", "use evaluation: auto"
            )
        self.name = name
        self.policy = policy
        self.budget_s = float(budget_s)
        self.max_nodes = int(max_nodes)
        self.workers = max(1, int(workers))
        self.num_drafts = int(num_drafts) if policy == "tree" else 0
        self.debug_prob = float(debug_prob) if policy == "tree" else 0.0
        self.max_debug_depth = int(max_debug_depth)
        self.ensemble_size = int(ensemble_size)
        self.blend_size = int(blend_size)
        self.blend_method = blend_method
        self.blend_steps = int(blend_steps)
        self.diversify_prob = float(diversify_prob) if policy == "tree" else 0.0
        self.evaluation = evaluation
        self.node_time_budget_s = node_time_budget_s
        self.min_gain = float(min_gain)
        self.validation = {"scheme": "auto", "folds": 1, "fraction": 0.2, "seed": 0, "max_rows": None}
        self.validation.update(dict(validation or {}))
        self.prompts = dict(prompts or {})
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.keep_work = keep_work

    @property
    def active(self) -> bool:
        return self.policy != "none" and self.max_nodes > 0 and self.budget_s > 0

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": self.policy,
            "budget_s": self.budget_s,
            "max_nodes": self.max_nodes,
            "workers": self.workers,
            "num_drafts": self.num_drafts,
            "ensemble_size": self.ensemble_size,
            "blend_size": self.blend_size,
            "blend_method": self.blend_method,
            "evaluation": self.evaluation,
        }

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def compiled(coder: Any) -> bool:
        """True for a coder whose scripts come from plans (moves are plan edits, evaluation can be oof)."""
        return callable(getattr(coder, "from_plan", None))

    def _runner(self, ctx: RefineContext, work: Path) -> tuple[str, Callable[[str, str], RunOutcome]]:
        evaluation = self.evaluation
        if evaluation == "auto":
            evaluation = "oof" if self.compiled(ctx.coder) else "holdout"
        if evaluation == "oof":
            return evaluation, OofRunner(ctx.sandbox, ctx.public_dir, work / "oof", ctx.facts)
        folds = build_validation_split(ctx.public_dir, work / "validation", **self.validation)
        return evaluation, ValidationRunner(ctx.sandbox, folds, work / "holdout", keep_work=self.keep_work)

    def _root_code(self, ctx: RefineContext, refined: Refined) -> CodeResult:
        code = refined.code or ctx.coder.generate(refined.text, ctx.facts)  # type: ignore[union-attr]
        return self._with_budget(code, ctx)

    def _with_budget(self, code: CodeResult, ctx: RefineContext) -> CodeResult:
        """A compiled script re-rendered on the common folds with the search's cross-validation budget (others
        as they are)."""
        if not self.compiled(ctx.coder) or code.plan is None:
            return code
        plan = common_folds(Plan.from_dict(code.plan), ctx.facts)
        if self.node_time_budget_s is not None:
            plan.validation.time_budget_s = float(self.node_time_budget_s)
        return ctx.coder.from_plan(plan, ctx.facts, attempt=code.attempt)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the loop
    def search(self, ctx: RefineContext, refined: Refined, deadline: float | None = None) -> Refined:
        """Improve on `refined` within the budget; returns the best node as a Refined (validated on inner
        validation), or `refined` itself when the search is off or nothing ran. `deadline` (a
        time.perf_counter() instant): the task's end, the chosen script's graded run included."""
        if not self.active:
            return refined
        if ctx.coder is None or ctx.sandbox is None:
            raise PipesynthError("the search needs a coder and a sandbox", "set coder= and sandbox=")
        started = time.perf_counter()
        work = ctx.work_dir / "search"
        evaluation, runner = self._runner(ctx, work)
        journal = ctx.journal
        rng = random.Random(self.seed + ctx.seed)
        state = SearchState(limit_s=self.budget_s, deadline=deadline)
        if isinstance(runner, OofRunner):
            state.full_rows = len(runner.labels)
        cache = RunCache()

        parent = refined.code_node_id or refined.node_id
        first_step = len(journal)
        root_code = self._root_code(ctx, refined)
        root = run_with_repair(
            ctx.coder,
            root_code,
            ctx.facts,
            runner,
            journal,
            parent,
            ctx.repair_rounds,
            stage="search",
            cache=cache,
        )
        for node in journal.lineage(root.node):
            if node.stage in ("search", "repair") and node.step >= first_step:
                node.meta.update(kind="root", move="the refined solution", evaluation=evaluation)
        self._remember(state, root.node, root.outcome)
        state.nodes.append(root.node)  # the root (after any repairs) is what drafts start from
        state.seen_codes.add(root.node.meta.get("code_sha", ""))
        seconds: list[float] = [time.perf_counter() - started]  # wall seconds of each node that ran
        overrun = max(seconds[0], MIN_OVERRUN_S)  # one node's length (the root's) past the limit at most
        if deadline is not None:  # keep the overrun and a root's length for the chosen script's graded run
            state.limit_s = max(0.0, min(self.budget_s, deadline - started - overrun - seconds[0]))
        if hasattr(runner, "deadline"):  # the hard stop: a node still running then is killed (a timeout)
            runner.deadline = started + state.limit_s + overrun

        blending = self.blend_size > 1 and isinstance(runner, OofRunner)
        self._loop(ctx, journal, state, runner, cache, rng, started, seconds)
        if blending and len(state.nodes) >= 2:
            # last: whole solutions (each with its own preprocessing) weighted on their out-of-fold predictions
            node = self._blend(ctx, journal, state, runner, work / "blend")
            if node is not None:
                state.nodes.append(node)

        if hasattr(runner, "deadline"):
            runner.deadline = None  # the search is over: a later run (verify) is not the search's
        best = self._best(journal, state)
        baseline = journal[state.baseline_id] if state.baseline_id else None
        journal.meta["search"] = {
            **self.settings(),
            "evaluation": evaluation,
            "nodes": len(state.nodes),
            "seconds": round(time.perf_counter() - started, 3),
            "limit_s": round(state.limit_s, 3),  # budget_s, or less under the task's deadline
            "too_slow_to_rerun": {
                n.id: f"its run takes {run_seconds(n):.0f} s, past the task's deadline"
                for n in state.nodes
                if self._eligible(n, state) and not self._fits(n, state) and n.validation_score is not None
            },
            "best": best.id if best else None,
            "best_score": best.validation_score if best else None,
            "root": state.nodes[0].id if state.nodes else None,
            # the fixed baseline's plan on the same rows and folds: the chosen node is never worse on inner
            # validation than this (it is a candidate)
            "baseline": baseline.id if baseline else None,
            "baseline_score": baseline.validation_score if baseline else None,
            "full_rows": state.full_rows,
            "not_eligible": {
                n.id: f"scored on {oof_rows(n)} of {state.full_rows} rows"
                for n in state.nodes
                if not self._eligible(n, state) and n.validation_score is not None
            },
            "skipped": list(state.skipped.values()),
        }
        if isinstance(runner, OofRunner):  # the chosen script's final run reads them instead of recomputing
            keep_derived(runner.inputs_dir, DERIVED_CACHES, ctx.work_dir / DERIVED_DIR)
        if not self.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        if best is None:
            note = "search: no node gave a valid inner-validation score; keeping the refined solution"
            log.warning("%s: %s", ctx.facts.get("slug"), note)
            return Refined(
                text=refined.text,
                node_id=refined.node_id,
                rank=refined.rank,
                code=CodeResult(code=root.code.code, plan=root.code.plan)
                if refined.code is None
                else refined.code,
                code_node_id=root.node.id if refined.code is None else refined.code_node_id,
                validated=False,
                notes=[*refined.notes, note],
            )
        root_score = state.nodes[0].validation_score
        log.info(
            "%s: search chose %s (%s) with %s=%.5g (root %s) after %d nodes",
            ctx.facts.get("slug"),
            best.id,
            best.meta.get("move"),
            journal.metric,
            best.validation_score,
            root_score,
            len(state.nodes),
        )
        return Refined(
            text=best.instruction or refined.text,
            node_id=refined.node_id,
            rank=refined.rank,
            code=CodeResult(
                code=best.code or "",
                plan=best.plan,
                substitutions=list(best.substitutions),
                notes=list(best.notes),
                attempt=best.attempt,
            ),
            code_node_id=best.id,
            # oof nodes ran on the full public files; holdout nodes on the validation split (verify may follow)
            validated=True,
            validation_score=best.validation_score,
            notes=[*refined.notes, f"search: {best.meta.get('move')} ({len(state.nodes)} nodes)"],
        )

    def _loop(
        self,
        ctx: RefineContext,
        journal: Journal,
        state: SearchState,
        runner: Callable[[str, str], RunOutcome],
        cache: RunCache,
        rng: random.Random,
        started: float,
        seconds: list[float],
    ) -> None:
        """Keep `workers` nodes running until the budget or `max_nodes` is spent: a new node starts as soon as
        one ends (a slow node never holds the other workers back). A node is not started when the recent
        nodes' typical length would take it past `budget_s`."""
        running: dict[Future[Node | None], Proposal] = {}
        began: dict[Future[Node | None], float] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            while True:
                while len(running) < self.workers:
                    elapsed = time.perf_counter() - started
                    typical = statistics.median(seconds[-5:]) if seconds else 0.0
                    if (
                        len(state.nodes) + len(running) >= self.max_nodes
                        or elapsed + typical > state.limit_s
                        or state.duplicates
                        > 2 * self.max_nodes  # the moves keep landing on scripts already run
                    ):
                        break
                    state.closing = (
                        elapsed + 2 * typical > state.limit_s
                        or len(state.nodes) + len(running) + 2 * self.workers >= self.max_nodes
                    )
                    proposal = self._next(ctx, journal, state, rng, list(running.values()))
                    if proposal is None:
                        break  # nothing to try now; a node that ends may open new moves (a new best, a failure)
                    if self._encoding_too_slow(proposal, ctx, runner, state, elapsed):
                        continue  # claimed, so not proposed again: the next move instead
                    future = pool.submit(self._evaluate, proposal, ctx, journal, runner, cache, state)
                    running[future], began[future] = proposal, time.perf_counter()
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: began[f]):  # in the order they started
                    proposal = running.pop(future)
                    node = future.result()
                    if node is not None and proposal.kind == "baseline":
                        state.baseline_id = str(node.meta.get("same_as") or node.id)
                    if node is not None and node.status == "duplicate":
                        state.duplicates += 1
                    elif node is not None:
                        seconds.append(time.perf_counter() - began[future])
                        state.nodes.append(node)

    def _encoding_too_slow(
        self,
        proposal: Proposal,
        ctx: RefineContext,
        runner: Callable[[str, str], RunOutcome],
        state: SearchState,
        elapsed: float,
    ) -> bool:
        """A move that turns sentence embeddings on, with none cached yet, whose encoding alone would end past
        `budget_s` (src.pipeline.code.compiler.embedding_cost): recent nodes' durations do not predict it."""
        if proposal.plan is None or proposal.plan.preprocessing.text.representation == "tfidf":
            return False
        parent = ((proposal.parent.plan or {}).get("preprocessing") or {}).get("text") or {}
        if parent.get("representation", "tfidf") != "tfidf":
            return False  # the parent already encodes: its cache is there
        inputs = getattr(runner, "inputs_dir", None)
        if inputs is not None and any(any((Path(inputs) / f).glob("*.npy")) for f in DERIVED_CACHES):
            return False
        if not state.encoding_asked:
            state.encoding_asked = True
            state.encoding_s = encoding_seconds(ctx.public_dir, ctx.facts)
        if state.encoding_s is None or elapsed + state.encoding_s <= state.limit_s:
            return False
        if proposal.move not in state.skipped:  # said once, not once per node it was proposed from
            state.skipped[proposal.move] = (
                f"not started: {proposal.move} (sentence encoding alone takes about {state.encoding_s:.0f} s on "
                f"one thread; {elapsed:.0f} of the {state.limit_s:.0f} s budget spent)"
            )
            log.info("%s: search %s", ctx.facts.get("slug"), state.skipped[proposal.move])
        if proposal.kind == "draft":
            state.drafts -= 1  # another draft takes its place
        return True

    @staticmethod
    def _eligible(node: Node, state: SearchState) -> bool:
        """A node may be chosen when its score covers the same rows as the others': every labelled public row
        (a node cut short by its time budget, or fitted on a row sample, scored fewer and is not comparable).
        When no node covers them all, those covering the most rows."""
        if state.full_rows is None or oof_rows(node) is None:
            return True
        covered = [
            r for n in state.nodes if n.validation_score is not None and (r := oof_rows(n)) is not None
        ]
        common = state.full_rows if state.full_rows in covered else max(covered, default=state.full_rows)
        return oof_rows(node) == common

    @staticmethod
    def _fits(node: Node, state: SearchState) -> bool:
        """Under a deadline, whether the node's run, once more, would end before it."""
        return state.deadline is None or run_seconds(node) <= state.deadline - time.perf_counter()

    def _best(self, journal: Journal, state: SearchState) -> Node | None:
        """The best scored node among the eligible ones (`_eligible`) whose run fits what is left of the task's
        time (`_fits`; when none does, the quickest to run); a later node must beat the incumbent by `min_gain`
        (relative) to replace it."""
        scored = [
            n
            for n in state.nodes
            if n.status == "ok" and n.validation_score is not None and self._eligible(n, state)
        ]
        fitting = [n for n in scored if self._fits(n, state)]
        if scored and not fitting:
            fitting = [min(scored, key=run_seconds)]
        best: Node | None = None
        for node in fitting:
            if best is None:
                best = node
                continue
            margin = abs(best.validation_score) * self.min_gain  # type: ignore[arg-type]
            shifted = node.validation_score + (-margin if journal.higher_is_better else margin)
            if journal.better(shifted, best.validation_score):  # type: ignore[arg-type]
                best = node
        return best

    # ------------------------------------------------------------------ proposals
    def _ranked(self, journal: Journal, state: SearchState) -> list[Node]:
        # a node whose edit changed nothing (its parent's exact score) is its parent again: never expanded
        good = [
            n
            for n in state.nodes
            if n.status == "ok" and n.validation_score is not None and not n.meta.get("no_effect")
        ]
        sign = -1.0 if journal.higher_is_better else 1.0
        return sorted(good, key=lambda n: (sign * float(n.validation_score), n.step))  # type: ignore[arg-type]

    def _propose(
        self, ctx: RefineContext, journal: Journal, state: SearchState, rng: random.Random, width: int
    ) -> list[Proposal]:
        out: list[Proposal] = []
        for _ in range(width * 3):  # a few tries: some candidate moves are duplicates
            if len(out) >= width:
                break
            proposal = self._next(ctx, journal, state, rng, out)
            if proposal is None:
                break
            out.append(proposal)
        return out

    def _claim(self, state: SearchState, node: Node, move: str) -> bool:
        tried = state.tried.setdefault(node.id, set())
        if move in tried:
            return False
        tried.add(move)
        return True

    def _next(
        self,
        ctx: RefineContext,
        journal: Journal,
        state: SearchState,
        rng: random.Random,
        pending: list[Proposal],
    ) -> Proposal | None:
        compiled = self.compiled(ctx.coder)
        ranked = self._ranked(journal, state)
        root = state.nodes[0]
        # 0. the fixed baseline's own plan, as baseline_gbdt fits it: the search never ends below it
        if compiled and not state.baseline_asked:
            state.baseline_asked = True
            plan = default_plan(ctx.facts, seed=int(Plan.from_dict(root.plan).seed) if root.plan else 0)
            return Proposal(root, "baseline", BASELINE_MOVE, plan=plan)
        # 1. drafts: other model families from the root's plan
        drafts = family_moves(Plan.from_dict(root.plan), state.full_rows) if compiled and root.plan else []
        if state.drafts < min(self.num_drafts, len(drafts)):
            for move, plan in drafts:
                if self._claim(state, root, move):
                    state.drafts += 1
                    return Proposal(root, "draft", move, plan=plan)
        # 2. debugging a failed leaf (AIDE: with probability debug_prob)
        if self.debug_prob > 0 and rng.random() < self.debug_prob:
            children = {n.parent for n in state.nodes}
            for node in state.nodes:
                depth = int(node.meta.get("debug_depth", 0))
                failed = node.status not in ("ok", "duplicate")
                if failed and node.id not in children and depth < self.max_debug_depth:
                    if self._claim(state, node, "debug"):
                        return Proposal(node, "debug", "repair the failed run")
        if not ranked:
            return None
        # 3. near the end: an ensemble of the best single-model nodes of different families, once per set
        if compiled and self.ensemble_size > 1 and len(ranked) >= 2 and ranked[0].plan and state.closing:
            families: dict[str, Node] = {}
            for node in ranked:
                if node.plan and len(node.plan["models"]) == 1:
                    families.setdefault(node.plan["models"][0]["family"], node)
            members = list(families.values())[: self.ensemble_size]
            key = tuple(sorted(m.id for m in members))
            if (
                len(members) >= 2
                and key not in state.ensembled
                and not any(p.kind == "ensemble" for p in pending)
            ):
                if state.drafts >= min(self.num_drafts, len(drafts)):
                    state.ensembled.add(key)
                    plan = ensemble_plan(
                        Plan.from_dict(members[0].plan),  # type: ignore[arg-type]
                        [Plan.from_dict(m.plan) for m in members[1:]],  # type: ignore[arg-type]
                        self.ensemble_size,
                    )
                    if plan is not None:
                        names = " + ".join(m.family for m in plan.models)
                        return Proposal(
                            members[0], "ensemble", f"ensemble of the best nodes: {names}", plan=plan
                        )
        # 4. improve the best node (then the next best when its moves are spent); now and then the best node of
        # another kind of solution instead, so the closing blend has strong members that err differently
        order = ranked
        if self.diversify_prob > 0 and rng.random() < self.diversify_prob:
            leaders: dict[tuple[Any, ...], Node] = {}
            for node in ranked:
                leaders.setdefault(signature(node), node)
            others = list(leaders.values())[1:]
            ids = {n.id for n in others}
            order = others + [n for n in ranked if n.id not in ids]
        for node in order:
            if compiled:
                if not node.plan:
                    continue
                if state.text_pairs is None:  # once per search: pair moves only where the data has pairs
                    state.text_pairs = has_text_pairs(
                        ctx.public_dir, ctx.facts, Plan.from_dict(node.plan).preprocessing.max_categories
                    )
                for move, plan in improve_moves(Plan.from_dict(node.plan), state.text_pairs):
                    if move not in state.inert and self._claim(state, node, move):
                        return Proposal(node, "improve", move, plan=plan)
            elif self.prompts.get("improve") and self._claim(state, node, f"llm-improve-{len(state.nodes)}"):
                return Proposal(node, "improve", "an edit the LLM proposed")
        if not state.closing:  # nothing left to improve: end with the ensemble of what was found
            state.closing = True
            return self._next(ctx, journal, state, rng, pending)
        return None

    # ------------------------------------------------------------------ blends
    @staticmethod
    def _remember(state: SearchState, node: Node, outcome: RunOutcome) -> None:
        """Where a run that succeeded wrote its files (what a blend reuses)."""
        if outcome.ok and outcome.executions and outcome.executions[0].get("workdir"):
            state.outputs[node.id] = Path(outcome.executions[0]["workdir"])

    @staticmethod
    def _row_statistics(runner: OofRunner, oof_path: Path) -> tuple[pd.DataFrame | None, np.ndarray | None]:
        """The public rows' text statistics by id (what a gradient-boosted stack sees beside its members), and
        the same rows aligned with the grader's y_true for `oof_path` (the answers' order)."""
        public = runner.public_dir
        read = {"dtype": str, "keep_default_na": False}
        train = pd.read_csv(public / "train.csv", **read)
        test = pd.read_csv(public / "test.csv", **read) if (public / "test.csv").is_file() else train.iloc[:0]
        by_id = row_statistics(train, test, runner.id_column, skip=runner.targets)
        if by_id is None:
            return None, None
        ids = set(pd.read_csv(oof_path, usecols=[0], **read).iloc[:, 0])
        graded = runner.labels[runner.id_column].astype(str)
        rows = graded[graded.isin(ids)]
        return by_id, by_id.reindex(rows).fillna(0.0).to_numpy(dtype=float)

    def _blend(
        self, ctx: RefineContext, journal: Journal, state: SearchState, runner: OofRunner, where: Path
    ) -> Node | None:
        """The blend node of the best distinct nodes: weights (or a stack) fitted on their out-of-fold
        predictions, its own out-of-fold predictions combined from the members' recorded outputs by the code its
        script embeds (src.pipeline.search.blend_outputs), graded like any node's. The script runs its members afresh
        when the solution is used; here they already ran."""
        slug = ctx.facts.get("slug")
        ranked = [n for n in self._ranked(journal, state) if self._eligible(n, state)]
        candidates = blend_candidates(ranked, state.outputs, self.blend_size)
        if state.deadline is not None:  # the blend reruns its members (PARALLEL at once): only those that fit
            left, kept = state.deadline - time.perf_counter(), []
            for node in candidates:
                if sum(run_seconds(n) for n in [*kept, node]) / BLEND_PARALLEL <= left:
                    kept.append(node)
            candidates = kept
        if len(candidates) < 2:
            return None
        metric = get_metric(str(ctx.facts["metric"]))
        if metric.prediction == "ranking":  # ranked label lists (MAP@k) have no row-wise average to fit
            log.info("%s: no blend: %s submissions are ranked labels, not numbers", slug, metric.name)
            return None
        grades = [
            runner.graded(state.outputs[n.id] / OOF_FILE, where / f"grade-{n.id}")[0] for n in candidates
        ]
        usable = [(n, g) for n, g in zip(candidates, grades, strict=True) if g.valid and g.y_pred is not None]
        usable = same_rows_as_best(usable, [state.outputs[n.id] / OOF_FILE for n, _ in usable])
        if len(usable) < 2:
            log.info("%s: no blend: fewer than two out-of-fold files over the best node's rows", slug)
            return None  # out-of-fold files over different rows cannot be blended row by row
        y_true = usable[0][1].y_true
        weights, score = fit_weights(y_true, [g.y_pred for _, g in usable], metric, steps=self.blend_steps)  # type: ignore[arg-type, misc]
        method, stacked = "weights", {}
        row_stats: tuple[pd.DataFrame | None, np.ndarray | None] = (None, None)
        if metric.per_class and self.blend_method in ("auto", "stack_gbdt"):  # only a stack_gbdt reads them
            row_stats = self._row_statistics(runner, state.outputs[usable[0][0].id] / OOF_FILE)
        for name, learner in STACK_METHODS.items():  # a stack learns from every candidate, weak ones included
            if self.blend_method not in ("auto", name) or (learner == "gbdt" and row_stats[0] is None):
                continue
            score_of = stack_score(
                y_true, [g.y_pred for _, g in usable], metric, learner=learner, extra=row_stats[1]
            )  # type: ignore[arg-type, misc]
            if score_of is None:
                continue
            stacked[name] = score_of
            best = score if method == "weights" else stacked[method]
            if self.blend_method == name or metric.better(score_of, best):
                method = name
        members = [
            Member(n.id, n.code or "", float(w), str(n.meta.get("move")), n.validation_score)
            for (n, _), w in zip(usable, weights, strict=True)
            if w > 0 or method != "weights"
        ]
        if len(members) < 2:
            log.info("%s: no blend: the best node alone beats every mix (%.6g)", slug, score)
            return None
        code = render_blend(members, ctx.facts, metric, method=method)
        kind, normalize = blend_kind(metric)
        outputs = [read_outputs(state.outputs[m.node_id]) for m in members]
        labels = runner.labels.set_index(runner.labels[runner.id_column].astype(str))[runner.targets[0]]
        folder = where / "outputs"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            submission, oof = combine_outputs(
                outputs,
                [m.weight for m in members],
                runner.id_column,
                kind,
                normalize,
                method,
                labels,
                statistics=row_stats[0],
            )
        except ValueError as err:
            log.warning("%s: no blend: %s", slug, err)
            return None
        submission.to_csv(folder / "submission.csv", index=False)
        oof.to_csv(folder / OOF_FILE, index=False)
        graded, rows = runner.graded(folder / OOF_FILE, where / "grade-blend")
        names = " + ".join(f"{m.node_id}x{m.weight:.2f}" for m in members)
        node = journal.add("search", parent=ranked[0])
        record_code(node, CodeResult(code=code, plan=None))
        node.meta.update(
            kind="blend",
            move=f"{BLEND_WORDS[method]} of {len(members)} solutions: {names}",
            final_run_s=round(sum(run_seconds(journal[m.node_id]) for m in members) / BLEND_PARALLEL, 3),
            debug_depth=0,
            blend={
                "method": method,
                "members": {m.node_id: round(m.weight, 6) for m in members},
                "fitted_score": score,
                "stack_scores": stacked,
                "evaluated_from": "the members' recorded out-of-fold predictions (they already ran)",
            },
        )
        outcome = RunOutcome(
            ok=graded.valid,
            status="ok" if graded.valid else "invalid",
            executions=[{"workdir": str(folder), "duration_s": 0.0, "oof_rows": rows}],
            scores=[graded.score],
            reasons=[graded.reason],
            split="oof",
        )
        _finish(node, outcome)
        log.info("%s: search %s -> %s %s", slug, node.meta["move"], outcome.status, graded.score)
        return node

    # ------------------------------------------------------------------ evaluation
    def _code(self, proposal: Proposal, ctx: RefineContext, journal: Journal) -> CodeResult | None:
        coder = ctx.coder
        if proposal.kind == "debug":
            previous = CodeResult(
                code=proposal.parent.code or "", plan=proposal.parent.plan, attempt=proposal.parent.attempt
            )
            execution = proposal.parent.execution
            failure = execution[-1] if isinstance(execution, list) and execution else execution
            reason = (proposal.parent.validation or {}).get("reasons") or []
            if isinstance(failure, dict) and proposal.parent.status == "invalid":
                failure = {**failure, "status": "invalid", "message": next((r for r in reason if r), None)}
            return coder.repair(previous, failure or proposal.parent.status, ctx.facts)  # type: ignore[union-attr]
        if proposal.plan is not None:
            common_folds(proposal.plan, ctx.facts)
            if (
                self.node_time_budget_s is not None and proposal.kind != "baseline"
            ):  # the baseline's own budget
                proposal.plan.validation.time_budget_s = float(self.node_time_budget_s)
            return coder.from_plan(proposal.plan, ctx.facts)  # type: ignore[union-attr]
        text, usage = self._llm_instruction(proposal, ctx, journal)
        proposal.instruction, proposal.llm = text, usage
        return coder.generate(text, ctx.facts)  # type: ignore[union-attr]

    def _evaluate(
        self,
        proposal: Proposal,
        ctx: RefineContext,
        journal: Journal,
        runner: Callable[[str, str], RunOutcome],
        cache: RunCache,
        state: SearchState,
    ) -> Node | None:
        try:
            code = self._code(proposal, ctx, journal)
        except (PipesynthError, ValueError, KeyError, TypeError) as err:  # a bad move must not end the search
            log.warning("%s: search move %r failed to build: %s", ctx.facts.get("slug"), proposal.move, err)
            return None
        if code is None:
            return None
        node = journal.add("search", parent=proposal.parent)
        record_code(node, code)
        if proposal.llm:
            node.llm = proposal.llm
        node.instruction = proposal.instruction or proposal.parent.instruction
        depth = int(proposal.parent.meta.get("debug_depth", 0)) + (1 if proposal.kind == "debug" else 0)
        node.meta.update(kind=proposal.kind, move=proposal.move, debug_depth=depth)
        seen = cache.get(code.code)
        if seen is not None:
            same_as, outcome = seen
            node.meta["same_as"] = same_as
            node.finish("duplicate", validation=outcome.validation_record(), validation_score=None)
            return node
        outcome = runner(code.code, node.id)
        _finish(node, outcome)
        cache.put(code.code, node.id, outcome)
        self._remember(state, node, outcome)
        parent_score = proposal.parent.validation_score
        if outcome.ok and outcome.score is not None and parent_score is not None:
            if abs(outcome.score - parent_score) <= 1e-12 * max(1.0, abs(parent_score)):
                node.meta["no_effect"] = True  # the edit changed no prediction that counts
                if proposal.move.startswith("features: "):
                    # a feature step is about the data, not the model it feeds (one-hot encoding on a table
                    # without categorical columns): it changes nothing from any other node either
                    state.inert.add(proposal.move)
        log.info(
            "%s: search %s %s -> %s %s",
            ctx.facts.get("slug"),
            proposal.kind,
            proposal.move,
            outcome.status,
            outcome.score,
        )
        return node

    # ------------------------------------------------------------------ LLM moves
    def summary(self, journal: Journal, nodes: list[Node]) -> str:
        """The journal as the LLM sees it: one line per search node (change, status, score)."""
        lines = []
        for node in nodes:
            score = "n/a" if node.validation_score is None else f"{node.validation_score:.6g}"
            lines.append(
                f"- {node.id} (from {node.parent}): {node.meta.get('move')} -> {node.status}, {score}"
            )
        direction = "higher" if journal.higher_is_better else "lower"
        return f"Metric {journal.metric} ({direction} is better). Solutions tried so far:\n" + "\n".join(
            lines
        )

    def _llm_instruction(
        self, proposal: Proposal, ctx: RefineContext, journal: Journal
    ) -> tuple[str, dict[str, Any]]:
        client = ctx.client
        if client is None or not self.prompts.get("improve"):
            raise PipesynthError("an LLM search move needs an LLM and search.prompts.improve", "set llm=...")
        nodes = [n for n in journal.nodes if n.stage == "search"]
        values = {
            "task": task_summary(ctx.facts),
            "journal": self.summary(journal, nodes),
            "instruction": proposal.parent.instruction or "",
            "code": proposal.parent.code or "",
        }
        try:
            content = self.prompts["improve"].format_map(values)
        except (KeyError, IndexError, ValueError) as err:
            raise PipesynthError(
                f"search.prompts.improve has a placeholder that cannot be filled ({err})",
                f"use only {{{', '.join(sorted(values))}}} (literal braces as {{{{ }}}})",
            ) from None
        messages = [{"role": "user", "content": content}]
        if self.prompts.get("system"):
            messages.insert(0, {"role": "system", "content": self.prompts["system"]})
        [answer] = client.complete(
            [
                ChatRequest(
                    messages=tuple(messages),
                    tag="search.improve",
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    seed=self.seed + len(nodes),
                )
            ]
        )
        text = answer.text.strip()
        if "```" in text:  # an answer that is code: keep the instruction text around it
            text = text.replace(extract_code(text).strip(), "").strip() or text
        return text, llm_usage([answer])


def load_journal_search(path: str | Path) -> list[dict[str, Any]]:
    """The search nodes of a saved journal.json (id, parent, kind, move, status, score), in order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [
        {
            "id": n["id"],
            "parent": n["parent"],
            "kind": (n.get("meta") or {}).get("kind"),
            "move": (n.get("meta") or {}).get("move"),
            "status": n["status"],
            "validation_score": n.get("validation_score"),
        }
        for n in data["nodes"]
        if n["stage"] == "search"
    ]
