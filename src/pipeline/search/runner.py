"""Run a search node: the script on the full public files, its out-of-fold predictions graded against the public train labels (never the private answers)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from src.pipeline.code.repair import (
    PublicRunner,
    RunOutcome,
)
from src.sandbox.inputs import overlay_inputs
from src.tasks.grading import Grade, grade
from src.tasks.prepare import PreparedTask

log = logging.getLogger(__name__)


OOF_FILE = "oof_submission.csv"
# folders of label-free derived features a compiled script caches in its work folder (sentence embeddings); the
# search hands them on to later runs as input/<folder>/, so a slow encoding is done once per search
DERIVED_CACHES = ("embeddings",)


class OofRunner(PublicRunner):
    """Run a script on the full public files; grade its out-of-fold predictions against the public train labels.

    A run is `ok` when the script exits cleanly with a well-shaped submission AND an out-of-fold file the
    grader accepts; the score is the task metric over the train rows the file covers (`meta.oof_rows`).
    """

    def __init__(self, sandbox: Any, public_dir: str | Path, work_dir: str | Path, facts: dict[str, Any]):
        super().__init__(sandbox, public_dir, work_dir)
        self.facts = facts
        self.id_column = str(facts["id_column"])
        self.targets = [str(t) for t in facts["targets"]]
        train = pd.read_csv(self.public_dir / "train.csv", dtype=str, keep_default_na=False, na_filter=False)
        self.labels = train[[self.id_column, *self.targets]].drop_duplicates(self.id_column)
        self.inputs_dir = self._overlay()

    def _overlay(self) -> Path:
        """The runs' input folder: links to the public files, plus the derived caches earlier runs wrote."""
        return overlay_inputs(self.public_dir, self.work_dir / "inputs", skip=DERIVED_CACHES)

    def _keep_caches(self, workdir: Path) -> None:
        """Move the derived features a successful run cached into the overlay, for the runs after it."""
        for folder in DERIVED_CACHES:
            source = workdir / folder
            if not source.is_dir() or source.is_symlink():
                continue
            target = self.inputs_dir / folder
            target.mkdir(exist_ok=True)
            for item in source.glob("*.npy"):
                if item.name.startswith("."):  # a write that did not finish
                    continue
                if item.is_file() and not item.is_symlink() and not (target / item.name).exists():
                    tmp = (
                        target / f".{item.name}.{workdir.parent.name}.part"
                    )  # one per run: runs end together
                    shutil.copyfile(item, tmp)
                    tmp.replace(target / item.name)  # atomic: a run starting now sees all of it or none

    def grade_oof(self, oof_path: Path, where: Path) -> tuple[float | None, str | None, int]:
        """(score, reason when invalid, rows graded) of an out-of-fold file."""
        graded, rows = self.graded(oof_path, where)
        return graded.score, graded.reason, rows

    def graded(self, oof_path: Path, where: Path) -> tuple[Grade, int]:
        """The grader's verdict on an out-of-fold file (its aligned y_true / y_pred when valid), rows graded."""
        if not oof_path.is_file() or oof_path.is_symlink():
            reason = f"the script wrote no {OOF_FILE} (out-of-fold predictions)"
            return Grade(score=None, valid=False, reason=reason, metric=str(self.facts["metric"])), 0
        ids = pd.read_csv(oof_path, dtype=str, usecols=[0], keep_default_na=False).iloc[:, 0]
        answers = self.labels[self.labels[self.id_column].isin(set(ids))]
        private = where / "oof_answers"  # host side, outside the sandbox's work folder
        private.mkdir(parents=True, exist_ok=True)
        answers.to_csv(private / "answers.csv", index=False, lineterminator="\n")
        facts = self.facts
        prepared = PreparedTask(
            slug=str(facts.get("slug", "task")),
            seed=0,
            root=where,
            public_dir=self.public_dir,
            private_dir=private,
            answers_path=private / "answers.csv",
            id_column=self.id_column,
            targets=self.targets,
            submission_columns=[str(c) for c in facts.get("submission_columns") or self.targets],
            metric=str(facts["metric"]),
            higher_is_better=bool(facts["higher_is_better"]),
            task_type=str(facts["task_type"]),
            class_labels=facts.get("class_labels"),
            n_train=0,
            n_test=len(answers),
            split_method="inner-oof",
            official_test=False,
        )
        return grade(prepared, oof_path), len(answers)

    def __call__(self, code: str, node_id: str) -> RunOutcome:
        outcome = super().__call__(code, node_id)
        outcome.split = "oof"
        if not outcome.ok:
            return outcome
        workdir = Path(outcome.executions[0]["workdir"])
        self._keep_caches(workdir)
        score, reason, rows = self.grade_oof(workdir / OOF_FILE, self.work_dir / node_id)
        outcome.scores, outcome.reasons = [score], [reason]
        outcome.executions[0]["oof_rows"] = rows
        if score is None:
            outcome.ok, outcome.status = False, "invalid"
            outcome.failure = {"status": "invalid", "message": reason, "reason": reason, "traceback": None}
        return outcome
