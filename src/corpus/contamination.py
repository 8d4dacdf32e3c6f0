"""Which corpus competitions are the competitions being evaluated: kept out of training and retrieval.

The corpus has no Kaggle slug; its description is the competition's subtitle plus a short overview. A task
(task.json title + description.md) matches a corpus competition when
  - the task title's main phrase ("Titanic" from "Titanic - Machine Learning from Disaster") appears as whole
    words in the corpus description, or
  - at least `min_overlap` of the corpus description's word 5-grams occur in the task's title + description.
Measured on the shipped data: the true matches score 0.28 (House Prices) and 0.68 (Spooky Author
Identification) on overlap, every other task/competition pair at most 0.03; Titanic matches by its title.

    ex = exclusion_for_suites(["dev", "paper"], corpus_rows, data_dir)
    ex.report        # {"titanic": 99, "spooky-author-identification": 14, ...}
    kept = ex.apply(rows)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from src.config import REPO_ROOT
from src.errors import PipesynthError

SUITE_DIR = REPO_ROOT / "conf" / "suite"
KNOWN_TASKS_PATH = Path(__file__).with_name("known_tasks.yaml")
DEFAULT_MIN_OVERLAP = 0.15
_SHINGLE = 5
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TITLE_SPLIT = re.compile(r"\s+[-–—:|]\s+")
log = logging.getLogger(__name__)


def normalise(text: str) -> str:
    """Lower-case words and digits separated by single spaces (markup, punctuation and HTML comments dropped)."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", _COMMENT.sub(" ", text).lower()).split())


def _shingles(words: Sequence[str], n: int = _SHINGLE) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class TaskText:
    """What a task is recognised by: its slug, title and description text."""

    slug: str
    title: str
    description: str

    @classmethod
    def from_dir(cls, task_dir: str | Path) -> TaskText:
        """Read `<task_dir>/task.json` (title) and description.md (either may be missing, not both)."""
        import json

        task_dir = Path(task_dir)
        facts_path, description_path = task_dir / "task.json", task_dir / "description.md"
        if not facts_path.is_file() and not description_path.is_file():
            raise PipesynthError(
                f"task folder '{task_dir}' has neither task.json nor description.md",
                "point paths.data_dir at the folder holding <slug>/task.json, or fix the suite's task list",
            )
        facts = json.loads(facts_path.read_text()) if facts_path.is_file() else {}
        description = description_path.read_text() if description_path.is_file() else ""
        return cls(str(facts.get("slug", task_dir.name)), str(facts.get("title", "")), description)

    @property
    def title_phrase(self) -> str:
        """The title before a " - " subtitle, normalised ("titanic")."""
        return normalise(_TITLE_SPLIT.split(self.title.strip())[0]) if self.title.strip() else ""


@dataclass
class Exclusion:
    """Corpus competitions to leave out, and per suite task how many corpus rows that removes."""

    competitions: set[str] = field(default_factory=set)
    report: dict[str, int] = field(default_factory=dict)  # task slug -> corpus rows removed
    matches: dict[str, list[str]] = field(default_factory=dict)  # task slug -> corpus competitions
    suites: list[str] = field(default_factory=list)

    def __contains__(self, competition: object) -> bool:
        return competition in self.competitions

    def keep_mask(self, competitions: Iterable[str]) -> list[bool]:
        """True for rows whose competition is not excluded."""
        return [c not in self.competitions for c in competitions]

    def apply(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows of competitions that are not excluded."""
        return rows[self.keep_mask(rows["competition"])]

    def merge(self, other: Exclusion | None) -> Exclusion:
        """Both exclusions together."""
        if other is None:
            return self
        return Exclusion(
            self.competitions | other.competitions,
            {**self.report, **other.report},
            {**self.matches, **other.matches},
            [*self.suites, *(s for s in other.suites if s not in self.suites)],
        )

    def as_dict(self) -> dict[str, Any]:
        """For a run's record: suites, removed rows per task, matched corpus competitions."""
        return {
            "suites": list(self.suites),
            "rows_removed": dict(self.report),
            "rows_removed_total": int(sum(self.report.values())),
            "competitions": sorted(self.competitions),
            "matches": {k: list(v) for k, v in self.matches.items()},
        }


def _corpus_competitions(rows: pd.DataFrame) -> pd.DataFrame:
    if not {"competition", "description"} <= set(rows.columns):
        raise PipesynthError(
            "corpus rows lack a `competition` or `description` column",
            "pass rows from the corpus loader (src.corpus.linguacodus.load_linguacodus)",
        )
    return rows.groupby("competition", sort=True).agg(
        description=("description", "first"), rows=("description", "size")
    )


def exclusion_for_tasks(
    tasks: Iterable[TaskText | str | Path],
    corpus_rows: pd.DataFrame,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    suites: Sequence[str] = (),
) -> Exclusion:
    """The corpus competitions matching any task (a TaskText or a task folder), see the module docstring."""
    texts = [t if isinstance(t, TaskText) else TaskText.from_dir(t) for t in tasks]
    competitions = _corpus_competitions(corpus_rows)
    corpus = [(name, normalise(desc), int(n)) for name, desc, n in competitions.itertuples()]
    corpus_shingles = [_shingles(text.split()) for _, text, _ in corpus]
    out = Exclusion(suites=list(suites))
    for task in texts:
        task_shingles = _shingles(normalise(f"{task.title}\n{task.description}").split())
        phrase = task.title_phrase
        phrase_re = re.compile(rf"\b{re.escape(phrase)}\b") if phrase else None
        matched = []
        for (name, text, _), shingles in zip(corpus, corpus_shingles, strict=True):
            overlap = len(shingles & task_shingles) / len(shingles) if shingles else 0.0
            if overlap >= min_overlap or (phrase_re is not None and phrase_re.search(text)):
                matched.append(name)
        out.matches[task.slug] = matched
        out.report[task.slug] = int(sum(n for name, _, n in corpus if name in matched))
        out.competitions.update(matched)
    return out


def suite_tasks(suite: str, suite_dir: str | Path = SUITE_DIR) -> list[str]:
    """The task slugs a suite config (conf/suite/<suite>.yaml) lists."""
    path = Path(suite_dir) / f"{suite}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(suite_dir).glob("*.yaml"))
        raise PipesynthError(
            f"suite '{suite}' named in a contamination exclusion has no config {path}",
            f"use one of {known}, or an empty list to opt out",
        )
    tasks = (yaml.safe_load(path.read_text()) or {}).get("tasks") or []
    return [str(t) for t in tasks]


def known_tasks(path: str | Path = KNOWN_TASKS_PATH) -> dict[str, dict[str, Any]]:
    """The shipped suites' tasks as the repo knows them (src/corpus/known_tasks.yaml): slug -> title, matches."""
    entries = (yaml.safe_load(Path(path).read_text()) or {}).get("tasks") or []
    return {str(e["slug"]): e for e in entries}


def _has_task_files(folder: Path) -> bool:
    return (folder / "task.json").is_file() or (folder / "description.md").is_file()


def exclusion_for_suites(
    suites: Iterable[str],
    corpus_rows: pd.DataFrame,
    data_dir: str | Path,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    extra_tasks: Iterable[str] = (),
    suite_dir: str | Path = SUITE_DIR,
) -> Exclusion:
    """The exclusion for every task of the named suites (conf/suite/<name>.yaml) plus `extra_tasks` slugs.

    A task whose folder is under `data_dir` is matched from its files; one whose folder is absent is matched from
    what the repo knows of it (`known_tasks`: its title, and the corpus competitions its folder matched). An
    absent folder is never an error: a data dir holding only the user's own task still excludes the suites.
    """
    suites = list(suites)
    slugs = list(
        dict.fromkeys([*(s for suite in suites for s in suite_tasks(suite, suite_dir)), *extra_tasks])
    )
    known = known_tasks()
    present = [Path(data_dir) / slug for slug in slugs if _has_task_files(Path(data_dir) / slug)]
    absent = [slug for slug in slugs if not _has_task_files(Path(data_dir) / slug)]
    recalled = [TaskText(slug, str(known[slug].get("title") or ""), "") for slug in absent if slug in known]
    unknown = [slug for slug in absent if slug not in known]
    if unknown:
        log.warning(
            "contamination: no task folder under %s and nothing known in %s for %s; not excluded",
            data_dir,
            KNOWN_TASKS_PATH.name,
            unknown,
        )
    out = exclusion_for_tasks([*present, *recalled], corpus_rows, min_overlap, suites=suites)
    in_corpus = set(_corpus_competitions(corpus_rows).index)
    sizes = corpus_rows["competition"].value_counts()
    for text in recalled:
        matched = [c for c in known[text.slug].get("corpus_matches") or [] if c in in_corpus]
        out.matches[text.slug] = list(dict.fromkeys([*out.matches[text.slug], *matched]))
        out.report[text.slug] = int(sum(int(sizes[c]) for c in out.matches[text.slug]))
        out.competitions.update(matched)
    return out


def exclusion_from_config(cfg: Any, corpus_rows: pd.DataFrame, data_dir: str | Path) -> Exclusion | None:
    """From a `contamination:` config block (exclude_suites, exclude_tasks, min_overlap); None when both are empty."""
    if cfg is None:
        return None
    suites = list(cfg.get("exclude_suites") or [])
    tasks = list(cfg.get("exclude_tasks") or [])
    if not suites and not tasks:
        return None
    return exclusion_for_suites(
        suites, corpus_rows, data_dir, float(cfg.get("min_overlap", DEFAULT_MIN_OVERLAP)), tasks
    )
