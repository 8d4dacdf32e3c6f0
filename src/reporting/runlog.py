"""W&B (or CSV) runs for generation and evaluation, from the same `logger` config group as training.

One run per (task, solution variant, seed), grouped by experiment (`group`, default the run's `name`), tagged
`key=value` with the variant's axes, found generically in its resolved config: every sub-config with a `name`
or `mode` (refine, coder, retrieval, search, model, prompt, ... — a new config group needs no code) plus the
scalar keys listed in `run_tags.keys` (temperature, k, adapter). Summary: score, validation score, position
[+ interval], beaten %, medal, status, seconds per stage, LLM requests/tokens/cost. The chosen instruction,
solution.py and journal.json go in as one artifact; a suite-level run holds all records as a W&B Table.

The loggers are the Lightning loggers of `cfg.logger` (so `logger=wandb|csv|none` mean what they mean for
training), built once per run with per-run identity; W&B extras are used where the logger has them.
Offline by default: `wandb sync <run dir>/wandb/offline-run-*` uploads later.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from src.reporting.results import mean_beaten

log = logging.getLogger(__name__)

ARTIFACT_FILES = ("instruction.md", "solution.py", "journal.json")


# --------------------------------------------------------------------------------------------- variant axes
def _nodes(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, child) for every mapping below `node`, breadth first, keys of nested nodes not prefixed."""
    queue = [(prefix, node)]
    while queue:
        _, current = queue.pop(0)
        for key, child in current.items():
            yield str(key), child
            if isinstance(child, Mapping):
                queue.append((str(key), child))


def variant_axes(
    variant: Mapping[str, Any],
    keys: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The variant's axes: `{key: name-or-mode}` of every named sub-config (shallowest first, but not those in
    `exclude`) and the shallowest scalar (or named node) found for each of `keys`. A path keeps its last three
    parts (an adapter folder: <experiment>/<run>/adapter)."""
    axes: dict[str, Any] = {}
    for key, child in _nodes(variant):
        if isinstance(child, Mapping) and key not in axes and key not in exclude:
            label = child.get("name", child.get("mode"))
            if isinstance(label, str | int | float | bool):
                axes[key] = label
    for wanted in keys:
        for key, child in _nodes(variant):
            if key != wanted:
                continue
            if isinstance(child, Mapping):
                label = child.get("name", child.get("mode"))
                if label is not None:
                    axes[key] = label
                    break
            elif child is None or isinstance(child, str | int | float | bool):
                axes[key] = "/".join(child.split("/")[-3:]) if isinstance(child, str) else child
                break
    return axes


def axis_tags(axes: Mapping[str, Any]) -> list[str]:
    """W&B tags `key=value` (W&B caps a tag at 64 characters)."""
    return [f"{k}={v}"[:64] for k, v in axes.items()]


# ----------------------------------------------------------------------------------------------- summaries
def record_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The W&B summary of one result record (interfaces D): scores, rating, status, seconds, LLM usage."""
    rating = record.get("rating") or {}
    meta = record.get("solution_meta") or {}
    execution = record.get("execution") or {}
    out: dict[str, Any] = {
        "score": record.get("score"),
        "validation_score": record.get("validation_score", meta.get("validation_score")),
        "status": record.get("status"),
        "error": record.get("error") or record.get("invalid_reason"),
        "position": rating.get("position"),
        "teams": rating.get("teams"),
        "position_low": record.get("position_low", rating.get("position_low")),
        "position_high": record.get("position_high", rating.get("position_high")),
        "beaten_pct": None if rating.get("beaten_fraction") is None else 100 * rating["beaten_fraction"],
        "medal": rating.get("medal") or "none",
        "medal_certain": record.get("medal_certain", rating.get("medal_certain")),
        "seconds": record.get("seconds"),
        "seconds/run": execution.get("duration_s"),
    }
    probs = record.get("medal_probs", rating.get("medal_probs")) or {}
    out.update({f"medal_probs/{k}": v for k, v in probs.items()})
    out.update(generation_summary(meta))
    return {k: v for k, v in out.items() if v is not None}


def stage_seconds(record: Mapping[str, Any]) -> str:
    """`instruct 41s, refine 9s, search 250s, verify 0s, total 300s, final run 31s`: each generation stage's wall
    seconds (the generation summary's timings) and the graded run's; empty for a solution without stages."""
    timings = (record.get("solution_meta") or {}).get("timings") or {}
    parts = [
        f"{str(k).removesuffix('_s')} {float(v):.0f}s"
        for k, v in timings.items()
        if isinstance(v, (int, float))
    ]
    run = (record.get("execution") or {}).get("duration_s")
    if parts and run is not None:
        parts.append(f"final run {float(run):.0f}s")
    return ", ".join(parts)


def generation_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds per stage (`timings`) and LLM usage (`llm`) of a generation summary."""
    out: dict[str, Any] = {}
    for stage, seconds in (meta.get("timings") or {}).items():
        out[f"seconds/{str(stage).removesuffix('_s')}"] = seconds
    usage = meta.get("llm") or {}
    for key in ("requests", "calls", "cache_hits", "prompt_tokens", "completion_tokens", "seconds"):
        if key in usage:
            out[f"llm/{key}"] = usage[key]
    if usage:  # a client that prices nothing (a local model) costs nothing
        out["llm/cost_usd"] = usage.get("cost_usd", 0.0)
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        out["llm/tokens"] = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    if meta.get("rank") is not None:
        out["rank"] = meta["rank"]
    refine = meta.get("refine") or {}
    for key in (
        "refinements",
        "fallbacks",
    ):  # a refiner that fell back measured nothing: counted, never hidden
        if key in refine:
            out[f"refine/{key}"] = refine[key]
    if meta.get("method"):
        out["method"] = meta["method"]
    return out


def flat_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the suite table: identity + summary."""
    return {"task": record["task"], "solution": record["solution"], "seed": record["seed"],
            "metric": record.get("metric"), **record_summary(record)}  # fmt: skip


# ----------------------------------------------------------------------------------------------- the runs
def _run_id(*parts: Any) -> str:
    """A stable W&B run id (<= 64 chars, no `/`): re-logging the same run syncs into the same W&B run."""
    text = "-".join(str(p) for p in parts)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', text)[:52]}-{digest}"


def _accepts(target: str) -> tuple[set[str], bool]:
    params = inspect.signature(get_class(target).__init__).parameters
    return set(params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class RunLogger:
    """Logs runs through every logger of `cfg.logger` (none: nothing is logged, nothing fails)."""

    def __init__(self, cfg: DictConfig, save_dir: str | Path) -> None:
        self.nodes = [n for n in (cfg.get("logger") or {}).values() if n]
        self.save_dir = Path(save_dir)
        # `name` interpolates Hydra's runtime (${hydra:...}), absent when a test or notebook composes the config
        name = OmegaConf.select(cfg, "name", default=None, throw_on_resolution_failure=False)
        self.group = str(cfg.get("group") or name or "")
        self.entry = str(cfg.get("entry") or "")
        tags_cfg = cfg.get("run_tags") or {}
        self.keys = list(tags_cfg.get("keys") or [])
        self.exclude = list(tags_cfg.get("exclude") or [])

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def _loggers(self, run_id: str, name: str, tags: list[str], job_type: str) -> list[Any]:
        loggers = []
        for node in self.nodes:
            named, passthrough = _accepts(node._target_)
            # `version` is the W&B run id and the CSV sub-folder; the rest are wandb.init arguments
            overrides: dict[str, Any] = {"save_dir": str(self.save_dir), "version": run_id}
            if passthrough:
                overrides.update(name=name, group=self.group, job_type=job_type,
                                 tags=[self.entry, *tags] if self.entry else tags)  # fmt: skip
            loggers.append(
                instantiate(node, **{k: v for k, v in overrides.items() if k in named or passthrough})
            )
        return loggers

    def log(
        self,
        *,
        run_id: str,
        name: str,
        config: Mapping[str, Any],
        summary: Mapping[str, Any],
        tags: list[str],
        job_type: str,
        files: list[Path] = (),  # type: ignore[assignment]
        artifact_name: str = "",
        table: list[dict[str, Any]] | None = None,
    ) -> list[Any]:
        """One run: config, summary (also as one metrics row), optional artifact of `files` and table.
        A logging failure is a warning: the result record is already stored and the run must not die of it."""
        try:
            loggers = self._loggers(run_id, name, tags, job_type)
            for logger in loggers:
                self._log_one(logger, config, summary, files, artifact_name, table)
        except Exception as err:  # noqa: BLE001 - see the docstring
            log.warning("run %s was not logged (%s: %s)", name, type(err).__name__, err)
            return []
        return loggers

    @staticmethod
    def _log_one(
        logger: Any,
        config: Mapping[str, Any],
        summary: Mapping[str, Any],
        files: list[Path],
        artifact_name: str,
        table: list[dict[str, Any]] | None,
    ) -> None:
        logger.log_hyperparams(dict(config))
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        logger.log_metrics(numbers, step=0)
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "summary"):  # W&B: strings (status, medal) belong in the summary too
            experiment.summary.update(dict(summary))
        if files and hasattr(experiment, "log_artifact"):
            import wandb

            artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]+", "-", artifact_name)[:120], type="solution")
            for path in files:
                artifact.add_file(str(path))
            experiment.log_artifact(artifact)
        if table and hasattr(logger, "log_table"):
            columns = sorted({c for row in table for c in row}, key=lambda c: list(table[0]).index(c)
                             if c in table[0] else len(table[0]))  # fmt: skip
            logger.log_table(
                "results", columns=columns, data=[[row.get(c) for c in columns] for row in table]
            )
        logger.finalize("success")
        if hasattr(experiment, "finish"):
            experiment.finish()

    # ------------------------------------------------------------------------------------ entry-point hooks
    def log_record(self, cfg: DictConfig, record: Mapping[str, Any], build_dir: Path | None = None) -> None:
        """The run of one result record of `src.evaluate` (variant: `cfg.solution`)."""
        if not self:
            return
        variant = _container(cfg.solution)
        axes = {"solution": record["solution"], **variant_axes(variant, self.keys, self.exclude)}
        files = _artifact_files(record, build_dir)
        self.log(
            run_id=_run_id(self.group, record["task"], record["solution"], f"s{record['seed']}"),
            name=f"{record['task']}/{record['solution']}/seed{record['seed']}",
            config={
                "task": record["task"],
                "seed": record["seed"],
                "solution": variant,
                "axes": axes,
                "suite": _container(cfg.get("suite")),
                "split_seed": cfg.get("split_seed"),
            },  # fmt: skip
            summary=record_summary(record),
            tags=[f"task={record['task']}", f"seed={record['seed']}", *axis_tags(axes)],
            job_type="evaluate",
            files=files,
            artifact_name=f"{record['task']}-{record['solution']}-seed{record['seed']}",
        )

    def log_suite(self, cfg: DictConfig, records: list[Mapping[str, Any]], solution: str) -> None:
        """The suite-level run: every record of `solution` as the W&B Table `results`, plus aggregates."""
        if not self or not records:
            return
        rows = [flat_row(r) for r in records]
        summary = {
            "records": len(rows),
            "valid": sum(1 for r in records if r.get("score") is not None),
            # the sweep objective: unrated runs count as 0 (as src.evaluate returns it to the Optuna sweeper)
            "mean_beaten_pct": 100 * mean_beaten(records),
            "medals": sum(1 for r in rows if r.get("medal") not in (None, "none")),
        }
        variant = _container(cfg.solution)
        axes = {"solution": solution, **variant_axes(variant, self.keys, self.exclude)}
        suite = str((cfg.get("suite") or {}).get("name", "suite"))
        # under a W&B sweep agent the suite run IS the agent's run: the sweep reads its mean_beaten_pct
        sweep_run = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
        self.log(
            run_id=sweep_run or _run_id(self.group, suite, solution, "suite"),
            name=f"{suite}/{solution}/suite",
            config={
                "solution": variant,
                "axes": axes,
                "suite": _container(cfg.get("suite")),
                "seeds": list(cfg.get("seeds") or []),
            },  # fmt: skip
            summary={k: v for k, v in summary.items() if v is not None},
            tags=[f"suite={suite}", *axis_tags(axes)],
            job_type="suite",
            table=rows,
        )

    def log_generation(self, cfg: DictConfig, summary: Mapping[str, Any], out_dir: Path) -> None:
        """The run of one `src.generate` call (variant: the whole generation config)."""
        if not self:
            return
        skip = ("hydra", "paths", "logger", "run_tags")
        variant = {str(k): _container(cfg[k]) for k in cfg if k not in skip}
        axes = variant_axes(variant, self.keys, self.exclude)
        task = str(summary.get("task") or cfg.get("name"))
        seed = cfg.get("seed", 0)
        self.log(
            run_id=_run_id(self.group, task, "generate", f"s{seed}", out_dir.name),
            name=f"{task}/generate/seed{seed}",
            config={"task": task, "seed": seed, "axes": axes, **variant},
            summary={
                "status": summary.get("status"),
                "validation_score": summary.get("validation_score"),
                **generation_summary(summary),
            },  # fmt: skip
            tags=[f"task={task}", f"seed={seed}", *axis_tags(axes)],
            job_type="generate",
            files=[out_dir / f for f in ARTIFACT_FILES if (out_dir / f).is_file()],
            artifact_name=f"{task}-generate-seed{seed}",
        )


def _container(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _artifact_files(record: Mapping[str, Any], build_dir: Path | None) -> list[Path]:
    """instruction.md, solution.py, journal.json of the record's build folder (those that exist)."""
    meta = record.get("solution_meta") or {}
    folders = [Path(p).parent for p in (meta.get("solution"), meta.get("journal")) if p]
    if build_dir is not None:
        folders.append(Path(build_dir))
    for folder in folders:
        found = [folder / f for f in ARTIFACT_FILES if (folder / f).is_file()]
        if found:
            return found
    return []
