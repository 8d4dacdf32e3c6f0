"""Execution-guided refinement: every option becomes a script, runs on a validation split of the public train, and the best validation score wins."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from src.errors import PipesynthError
from src.pipeline.code.repair import Attempted, RunCache, ValidationRunner, run_with_repair
from src.pipeline.instruct import Candidate
from src.pipeline.refine.base import RefineContext, Refined
from src.pipeline.validation import build_validation_split

log = logging.getLogger(__name__)


class ExecutionRefine:
    """Every option -> script -> sandbox on a public validation split -> grader; the best score wins.

    validation: {scheme: auto|holdout|kfold|time, folds, fraction, seed, max_rows} (src.pipeline.validation).
    workers: candidates run in parallel (threads; each run is its own sandboxed process).
    """

    name = "execution"

    def __init__(
        self,
        name: str = "execution",
        validation: dict[str, Any] | None = None,
        workers: int = 1,
        keep_work: bool = False,
    ) -> None:
        self.name = name
        self.validation = {"scheme": "auto", "folds": 1, "fraction": 0.2, "seed": 0, "max_rows": None}
        self.validation.update(dict(validation or {}))
        self.workers = max(1, int(workers))
        self.keep_work = keep_work

    def refine(self, ctx: RefineContext) -> Refined:
        if ctx.coder is None or ctx.sandbox is None:
            raise PipesynthError(
                "execution refinement needs a coder and a sandbox", "set coder= and sandbox="
            )
        folds = build_validation_split(ctx.public_dir, ctx.work_dir / "validation", **self.validation)
        runner = ValidationRunner(ctx.sandbox, folds, ctx.work_dir / "candidates", keep_work=self.keep_work)
        ctx.journal.meta["validation"] = {
            **self.validation,
            "scheme": folds[0].scheme,
            "n_train": [f.n_train for f in folds],
            "n_test": [f.n_test for f in folds],
        }
        cache = RunCache()
        coder = ctx.coder

        def attempt(candidate: Candidate) -> Attempted:
            code = coder.generate(candidate.text, ctx.facts)
            return run_with_repair(
                coder, code, ctx.facts, runner, ctx.journal, candidate.node_id, ctx.repair_rounds, cache=cache
            )

        if self.workers > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                results = list(pool.map(attempt, ctx.candidates))
        else:
            results = [attempt(c) for c in ctx.candidates]

        best: tuple[Candidate, Attempted] | None = None
        for candidate, done in zip(ctx.candidates, results, strict=True):
            score = done.outcome.score
            if done.node.status != "ok" or score is None:
                continue
            if best is None or ctx.journal.better(score, best[1].outcome.score):  # type: ignore[arg-type]
                best = (candidate, done)
        if best is None:
            first, done = ctx.candidates[0], results[0]
            note = "no option gave a valid submission on the validation split: keeping rank 1's last script"
            log.warning("%s: %s", ctx.facts.get("slug"), note)
            return Refined(
                text=first.text,
                node_id=first.node_id,
                rank=first.rank,
                code=done.code,
                code_node_id=done.node.id,
                notes=[note],
            )
        candidate, done = best
        log.info(
            "%s: option %d wins with validation %s=%.5g",
            ctx.facts.get("slug"),
            candidate.rank,
            ctx.journal.metric,
            done.outcome.score,
        )
        return Refined(
            text=candidate.text,
            node_id=candidate.node_id,
            rank=candidate.rank,
            code=done.code,
            code_node_id=done.node.id,
            validated=True,
            validation_score=done.outcome.score,
        )
