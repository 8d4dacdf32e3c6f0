"""Task registry: a task is a folder `<data_dir>/<slug>/` (task.json, description.md, leaderboard.csv, raw/).

    from src.tasks.registry import load_task
    task = load_task("../shared/data/kaggle", "bike-sharing-demand")

task.json holds the competition's facts. How a task is split and which leaderboard caveats apply are project
decisions, so they live in config, not in the (read-only) task folder: the suite's `split` defaults
(`conf/split/default.yaml`, composed by `conf/suite/*.yaml`) merged with an optional per-task file
`conf/task_overrides/<slug>.yaml` (keys `split`, `files` — train/test names, `copy`, `join`, `readers` —
and `leaderboard`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.tasks.metrics import get_metric, register_user_metric
from src.tasks.task import DATA_TYPES, DEFAULT_FILES, DEFAULT_SPLIT, TASK_TYPES, Task

log = logging.getLogger(__name__)

# not conf/tasks/: a config folder named like the runner's `tasks=[...]` key would turn that key into a group
DEFAULT_OVERRIDES_DIR = REPO_ROOT / "conf" / "task_overrides"
REQUIRED_FIELDS = ("title", "data_type", "task_type", "targets", "metric", "higher_is_better")


def _read_task_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipesynthError(
            f"task folder '{path.parent}' has no task.json",
            "add task.json with " + ", ".join(REQUIRED_FIELDS) + " (docs/tasks.md; `python -m src.task init` "
            "writes one)",
        )
    try:
        facts = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipesynthError(f"{path} is not valid JSON ({err})", "fix the file's syntax") from None
    missing = [key for key in REQUIRED_FIELDS if facts.get(key) is None]
    if missing:
        raise PipesynthError(
            f"{path} lacks field(s) {', '.join(missing)}",
            f"add {', '.join(missing)} to the task's task.json (docs/tasks.md)",
        )
    for key, allowed in (("task_type", TASK_TYPES), ("data_type", DATA_TYPES)):
        if facts[key] not in allowed:
            raise PipesynthError(
                f"{path}: unknown {key} {facts[key]!r}", f"use one of: {', '.join(allowed)} (docs/tasks.md)"
            )
    if not isinstance(facts["higher_is_better"], bool):
        raise PipesynthError(
            f"{path}: higher_is_better must be true or false, not {facts['higher_is_better']!r}",
            'write "higher_is_better": true (or false) in task.json',
        )
    return facts


def _load_override(overrides_dir: Path | None, slug: str) -> dict[str, Any]:
    if overrides_dir is None:
        return {}
    path = Path(overrides_dir) / f"{slug}.yaml"
    if not path.is_file():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    unknown = set(data or {}) - {"split", "files", "leaderboard"}
    if unknown:
        raise PipesynthError(
            f"{path} has unknown key(s) {sorted(unknown)}", "use only split, files and leaderboard"
        )
    return data or {}


def load_task(
    data_dir: str | Path,
    slug: str,
    split_defaults: dict[str, Any] | DictConfig | None = None,
    overrides_dir: str | Path | None = DEFAULT_OVERRIDES_DIR,
) -> Task:
    """Load `<data_dir>/<slug>/task.json` and merge the project's config for it.

    split_defaults: the suite's split settings (test fraction, row cap, splitter `_target_`);
    overrides_dir: folder of per-task `<slug>.yaml` files (None: no overrides).
    """
    root = Path(data_dir) / slug
    if not root.is_dir():
        available = sorted(found.parent.name for found in Path(data_dir).glob("*/task.json"))
        raise PipesynthError(
            f"task folder '{root}' does not exist",
            f"point paths.data_dir at the folder holding <slug>/task.json (tasks found there: {available})"
            if available
            else "point paths.data_dir at the folder holding <slug>/task.json",
        )
    facts = _read_task_json(root / "task.json")
    description = root / "description.md"
    if not description.is_file() or not description.read_text(encoding="utf-8", errors="replace").strip():
        log.warning(
            "task '%s' has no description (%s is %s): the instruction stage has only the title and the "
            "facts to go on; write what the task is and what is predicted there",
            slug,
            description,
            "empty" if description.is_file() else "missing",
        )
    if facts.get("slug", slug) != slug:
        raise PipesynthError(
            f"{root / 'task.json'} says slug '{facts['slug']}' but its folder is '{slug}'",
            "rename the folder or fix the slug",
        )
    if ":" in str(facts["metric"]):  # a user metric `module:function`, imported from the task folder first
        metric = register_user_metric(
            facts["metric"], facts["higher_is_better"], root, str(facts.get("metric_prediction") or "value")
        )
    else:
        metric = get_metric(facts["metric"])
    if bool(facts["higher_is_better"]) != metric.higher_is_better:
        raise PipesynthError(
            f"{root / 'task.json'}: higher_is_better={facts['higher_is_better']} contradicts metric "
            f"'{metric.name}' ({'higher' if metric.higher_is_better else 'lower'} is better)",
            "fix higher_is_better or the metric name",
        )
    targets = facts["targets"]
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise PipesynthError(f"{root / 'task.json'} has an empty targets list", "name the target column(s)")

    override = _load_override(Path(overrides_dir) if overrides_dir else None, slug)
    split_cfg = OmegaConf.merge(
        OmegaConf.create(DEFAULT_SPLIT),
        OmegaConf.create(split_defaults or {}),
        OmegaConf.create(override.get("split") or {}),
    )
    files_override = override.get("files") or {}
    files = {**DEFAULT_FILES, **files_override}
    files["readers"] = {**DEFAULT_FILES["readers"], **(files_override.get("readers") or {})}
    leaderboard = override.get("leaderboard") or {}
    notes = [facts[key] for key in ("note", "notes") if isinstance(facts.get(key), str)]
    notes += [n for key in ("note", "notes") if isinstance(facts.get(key), list) for n in facts[key]]
    return Task(
        slug=slug,
        title=str(facts["title"]),
        data_type=str(facts["data_type"]),
        task_type=str(facts["task_type"]),
        id_column=facts.get("id_column"),
        targets=[str(t) for t in targets],
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        root=root,
        teams=int(facts["teams"]) if facts.get("teams") is not None else None,
        notes=notes,
        leaderboard_source=facts.get("leaderboard_source"),
        split=OmegaConf.to_container(split_cfg, resolve=True),  # type: ignore[arg-type]
        split_overridden=bool(override.get("split")),
        files=files,
        leaderboard_flags=[str(f) for f in leaderboard.get("flags") or []],
        leaderboard_note=leaderboard.get("note"),
    )


def load_suite(
    cfg_suite: DictConfig | dict[str, Any], data_dir: str | Path, errors: dict[str, str] | None = None
) -> list[Task]:
    """The tasks of a suite config (`conf/suite/<name>.yaml`: name, tasks, split, overrides_dir).

    errors: when given, a task whose folder or config is broken is left out and its one-line message is
    stored under its slug (a suite runs the others); when None, the first such task raises.
    """
    cfg = cfg_suite if isinstance(cfg_suite, DictConfig) else OmegaConf.create(cfg_suite)
    slugs = cfg.get("tasks")
    if not slugs:
        raise PipesynthError(
            f"suite '{cfg.get('name', '?')}' lists no tasks",
            "add `tasks: [slug, ...]` to its conf/suite file",
        )
    split_defaults = cfg.get("split")
    overrides_dir = Path(str(cfg.get("overrides_dir") or DEFAULT_OVERRIDES_DIR))
    if not overrides_dir.is_absolute():
        overrides_dir = REPO_ROOT / overrides_dir
    tasks = []
    for slug in slugs:
        try:
            tasks.append(
                load_task(data_dir, str(slug), split_defaults=split_defaults, overrides_dir=overrides_dir)
            )
        except Exception as err:  # e.g. a broken task.json or override YAML: that task only
            if errors is None:
                raise
            errors[str(slug)] = (
                str(err) if isinstance(err, PipesynthError) else f"{type(err).__name__}: {err}"
            )
    return tasks
