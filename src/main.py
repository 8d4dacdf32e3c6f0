"""The main job, end to end and offline: fine-tune, generate + grade on a few dev tasks, baselines, paper/ tables.

    python -m src.main                               # conf/main.yaml: 3 dev tasks, seed 0 (bash scripts/main.sh
                                                     # on a fresh machine: set-up first)
    python -m src.main evaluate.tasks=null           # the whole dev suite
    python -m src.main train.experiment=qlora_qwen05b_cpu

Each step is its own process (`python -m src.train / src.evaluate / src.tables` with the overrides shown),
so memory is returned between steps and every step can be re-run by hand. Output goes to the terminal and to
`<run dir>/main.log`; `<run dir>/main_summary.json` and the closing summary say where everything was written.
Re-running resumes: a finished fine-tune is reused, an interrupted one continues from its last checkpoint,
finished suite records are skipped (the LLM response cache replays what a killed generation had asked).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config import user_errors_exit
from src.errors import PipesynthError

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One process of the main job."""

    name: str
    module: str
    overrides: list[str]
    skip_reason: str | None = None
    seconds: float | None = None
    returncode: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.overrides]


def _list(node: Any) -> list[str]:
    return [str(x) for x in (OmegaConf.to_container(node, resolve=True) if node is not None else [])]


def train_step(cfg: DictConfig) -> Step:
    """The fine-tune into a fixed run folder: skipped when its adapter is there, resumed from last.ckpt."""
    run_dir = Path(cfg.train.run_dir)
    overrides = [
        f"+experiment={cfg.train.experiment}",
        f"hydra.run.dir={run_dir}",
        *_list(cfg.train.overrides),
    ]
    step = Step("fine-tune", "src.train", overrides, outputs={"run_dir": str(run_dir)})
    if (run_dir / "adapter" / "adapter_config.json").is_file() and (run_dir / "train_summary.json").is_file():
        step.skip_reason = f"adapter already trained in {run_dir / 'adapter'}"
    elif (run_dir / "checkpoints" / "last.ckpt").is_file():
        step.overrides.append("ckpt_path=last")
    return step


def evaluate_steps(cfg: DictConfig) -> list[Step]:
    """One suite run per solution, each in its stable folder outputs/evaluate/<group>/<suite>/<solution>."""
    ev = cfg.evaluate
    common = [f"suite={ev.suite}", f"seeds=[{','.join(str(s) for s in ev.seeds)}]", f"+group={ev.group}"]
    if ev.tasks:
        common.append(f"tasks=[{','.join(str(t) for t in ev.tasks)}]")
    steps = []
    for solution, extra in (ev.solutions or {}).items():
        if extra is None:  # `evaluate.solutions.<name>=null` leaves a solution out
            continue
        name = f"{ev.group}/{ev.suite}/{solution}"
        run_dir = Path(cfg.paths.root_dir) / "outputs" / "evaluate" / name
        overrides = [f"solution={solution}", f"name={name}", *common, *_list(ev.overrides), *_list(extra)]
        steps.append(Step(f"suite: {solution}", "src.evaluate", overrides,
                          outputs={"results": str(run_dir / "results.jsonl"), "wandb": str(run_dir / "wandb")}))  # fmt: skip
    return steps


def tables_step(cfg: DictConfig, evaluate: list[Step], train: Step) -> Step:
    results = ",".join(s.outputs["results"] for s in evaluate)
    overrides = [f"results=[{results}]", f"out_dir={cfg.tables.out_dir}",
                 f"train_config={Path(train.outputs['run_dir']) / 'adapter' / 'pipesynth_config.yaml'}",
                 *_list(cfg.tables.overrides)]  # fmt: skip
    return Step("tables", "src.tables", overrides, outputs={"paper": str(cfg.tables.out_dir)})


def plan(cfg: DictConfig) -> list[Step]:
    """The steps of the main job, with what a re-run can skip. Every step gets this job's paths."""
    train = train_step(cfg)
    evaluate = evaluate_steps(cfg)
    if not evaluate:
        raise PipesynthError("evaluate.solutions names no solution", "keep at least one, e.g. generate")
    steps = [train, *evaluate, tables_step(cfg, evaluate, train)]
    paths = [f"paths.{key}={cfg.paths[key]}" for key in ("root_dir", "shared_dir", "cache_dir")]
    for step in steps:
        step.overrides = [*paths, *step.overrides]
    return steps


def _stamp(started: float) -> str:
    seconds = int(time.perf_counter() - started)
    return f"[{seconds // 60:02d}:{seconds % 60:02d}]"


def run_step(step: Step, logfile: TextIO, started: float) -> None:
    """Run one step, its output streamed to the terminal and the log file, line by line."""
    say = _sayer(logfile)
    if step.skip_reason:
        say(f"{_stamp(started)} == {step.name}: skipped ({step.skip_reason})")
        step.seconds, step.returncode = 0.0, 0
        return
    say(f"{_stamp(started)} == {step.name}: python -m {step.module} {' '.join(step.overrides)}")
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": os.environ.get("WANDB_SILENT", "true")}
    with subprocess.Popen(step.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            say(f"   {line.rstrip()}")
        step.returncode = proc.wait()
    step.seconds = round(time.perf_counter() - t0, 1)
    say(f"{_stamp(started)} == {step.name}: exit {step.returncode} after {step.seconds:.0f} s")


def _sayer(logfile: TextIO) -> Any:
    def say(text: str) -> None:
        print(text, flush=True)
        logfile.write(text + "\n")
        logfile.flush()

    return say


def closing_summary(cfg: DictConfig, steps: list[Step], wall_s: float) -> dict[str, Any]:
    """Where everything was written, what it measured, how long each step took."""
    train = steps[0]
    run_dir = Path(train.outputs["run_dir"])
    summary: dict[str, Any] = {"wall_s": round(wall_s, 1), "steps": [asdict(s) for s in steps]}
    train_summary = run_dir / "train_summary.json"
    if train_summary.is_file():
        ts = json.loads(train_summary.read_text())
        summary["train"] = {
            k: ts.get(k) for k in ("model", "steps", "val_loss_before", "val_loss_after", "wall_s")
        }
        summary["train"]["adapter"] = str(run_dir / "adapter")
    offline = sorted(
        str(p) for s in steps if "wandb" in s.outputs for p in Path(s.outputs["wandb"]).glob("offline-run-*")
    )
    summary["wandb_offline_runs"] = len(offline)
    summary["log_file"] = str(cfg.log_file)
    return summary


def main_job(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) every step; returns the closing summary (also written to main_summary.json)."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg)
    started = time.perf_counter()
    with open(cfg.log_file, "a") as logfile:
        say = _sayer(logfile)
        say(f"{_stamp(started)} pipesynth main job: {len(steps)} steps, log {cfg.log_file}")
        for step in steps:
            run_step(step, logfile, started)
            if step.returncode:
                say(f"{_stamp(started)} {step.name} failed (exit {step.returncode}); re-run the same command to "
                    f"resume, or the step alone: {' '.join(step.command)}")  # fmt: skip
                if step is steps[0]:  # nothing to generate with: stop; a failed suite still gets its tables
                    break
        summary = closing_summary(cfg, steps, time.perf_counter() - started)
        (out_dir / "main_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        say(f"\n{_stamp(started)} == summary (also in {out_dir / 'main_summary.json'})")
        for line in _summary_lines(summary, steps):
            say(f"   {line}")
    return summary


def _summary_lines(summary: dict[str, Any], steps: list[Step]) -> list[str]:
    lines = []
    train = summary.get("train")
    if train:
        lines.append(f"fine-tune: {train['model']}, {train['steps']} steps, validation loss "
                     f"{train['val_loss_before']} -> {train['val_loss_after']}; adapter {train['adapter']}")  # fmt: skip
    for step in steps:
        status = "skipped" if step.skip_reason else f"exit {step.returncode}, {step.seconds} s"
        where = ", ".join(f"{k} {v}" for k, v in step.outputs.items())
        lines.append(f"{step.name}: {status}; {where}")
    lines.append(
        f"W&B: {summary['wandb_offline_runs']} offline runs (upload: wandb sync <folder>/offline-run-*)"
    )
    lines.append(f"log: {summary['log_file']}; wall time {summary['wall_s']:.0f} s")
    return lines


@hydra.main(version_base="1.3", config_path="../conf", config_name="main")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    summary = main_job(cfg)
    if any(s["returncode"] for s in summary["steps"] if s["returncode"] is not None):
        sys.exit(1)


if __name__ == "__main__":
    main()
