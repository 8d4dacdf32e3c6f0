"""One generation: a task's public files -> ranked instructions -> refinement -> code -> checked solution.py.

    pipeline = Pipeline.from_config(cfg)            # cfg: conf/generate.yaml (or conf/solution/generate.yaml)
    result = pipeline.run(public_dir, out_dir, seed=0)
    result.solution_path, result.instruction, result.validation_score

Only the public folder of a prepared task is read (task.json, description.md, train/test/sample submission);
private answers are out of reach by construction. The steps:
1. `InstructionGenerator`: top-k ranked instructions from the LLM (one batch, malformed ones resampled).
2. The refiner (`conf/refine/`): none | multi_role | execution. Execution refinement already runs and validates
   a script per option.
3. The coder (`conf/coder/`) turns the chosen instruction into a script, unless the refiner already did.
4. Verification (`verify`): `auto` runs the script on the full public files unless it already ran cleanly on
   the validation split; `always` / `never`. A failed run goes through the repair loop.
5. `out_dir` gets journal.json (every node), instruction.md and solution.py.

The pipeline is built once (the LLM client and coder are reused across tasks); `run` is thread-safe — LLM
calls are serialised by a lock, sandbox runs of different tasks go in parallel.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import set_torch_threads
from src.corpus.metric_categories import load_metric_categories
from src.corpus.prompts import build_template
from src.errors import PipesynthError
from src.llm import build_client
from src.pipeline.code.base import Coder, CodeResult
from src.pipeline.code.repair import Attempted, PublicRunner, record_code, run_with_repair
from src.pipeline.instruct import (
    InstructionGenerator,
    build_retriever,
    context_format,
    inner_client,
    tokenizer_of,
)
from src.pipeline.journal import Journal, Node
from src.pipeline.refine import RefineContext, Refined
from src.sandbox.inputs import DERIVED_DIR, keep_derived

log = logging.getLogger(__name__)

VERIFY_MODES = ("auto", "always", "never")


class SerialClient:
    """An LLM client whose `complete` calls run one at a time (a local model is not thread-safe)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()

    def complete(self, requests: Any) -> Any:
        with self._lock:
            return self.client.complete(requests)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@dataclass
class GenerationResult:
    """What one generation produced. `status`: ok (the script ran cleanly on the validation split or the public
    files) | unchecked (verify=never and nothing ran) | failed (no run succeeded, even after repairs)."""

    task: str
    status: str
    instruction: str
    code: str
    out_dir: Path
    journal: Journal
    rank: int | None = None
    validation_score: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def solution_path(self) -> Path:
        return self.out_dir / "solution.py"

    @property
    def derived_dir(self) -> Path:
        """Derived, label-free inputs the search computed (input/<folder>/ for the script), when it kept any."""
        return self.out_dir / DERIVED_DIR

    @property
    def instruction_path(self) -> Path:
        return self.out_dir / "instruction.md"

    @property
    def journal_path(self) -> Path:
        return self.out_dir / "journal.json"

    @property
    def llm_usage(self) -> dict[str, Any]:
        total: dict[str, Any] = {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}
        seconds = 0.0
        for node in self.journal.nodes:
            for key in total:
                total[key] += int((node.llm or {}).get(key, 0))
            seconds += float((node.llm or {}).get("seconds", 0.0))
        total["seconds"] = round(seconds, 3)
        return total

    def summary(self) -> dict[str, Any]:
        chosen = self.journal[self.journal.chosen] if self.journal.chosen else None
        refines = self.journal.by_stage("refine")
        picked = [
            n
            for n in self.journal.by_stage("instruction")
            if n.status in ("ok", "fallback") or n.meta.get("source") == "retrieved"
        ]
        return {
            # where the k options came from, so an ablation arm can be checked to have run as named
            "instructions": {
                "llm": self.journal.meta.get("config", {}).get("llm"),
                "model": sum(1 for n in picked if n.meta.get("source") == "model"),
                "retrieved": sum(1 for n in picked if n.meta.get("source") == "retrieved"),
                "fallbacks": sum(1 for n in picked if n.status == "fallback"),
            },
            "refine": {
                "refinements": len(refines),
                "fallbacks": sum(1 for n in refines if n.status == "fallback"),
                "picked_by": [n.meta.get("picked_by") for n in refines if n.meta.get("picked_by")],
            },
            "task": self.task,
            "status": self.status,
            "rank": self.rank,
            "validation_score": self.validation_score,
            "metric": self.journal.metric,
            "chosen_node": self.journal.chosen,
            "substitutions": chosen.substitutions if chosen else [],
            "nodes": self.journal.summary(),
            "timings": self.timings,
            "llm": self.llm_usage,
            "solution": str(self.solution_path),
            "journal": str(self.journal_path),
            "notes": self.notes,
        }


def read_public_task(public_dir: str | Path) -> tuple[dict[str, Any], str]:
    """(task.json facts, description) of a public task folder."""
    public_dir = Path(public_dir)
    path = public_dir / "task.json"
    if not path.is_file():
        raise PipesynthError(
            f"no task.json in {public_dir}",
            "pass the public folder of a prepared task (prepare_task(...).public_dir)",
        )
    facts = json.loads(path.read_text())
    missing = [
        k for k in ("slug", "data_type", "task_type", "metric", "targets", "id_column") if k not in facts
    ]
    if missing:
        raise PipesynthError(f"{path} lacks {missing}", "re-prepare the task with src.tasks.prepare")
    desc_path = public_dir / "description.md"
    description = desc_path.read_text(encoding="utf-8") if desc_path.is_file() else ""
    if not description.strip():
        log.warning("%s: no description.md: the prompt holds only the title", facts["slug"])
        description = str(facts.get("title") or facts["slug"])
    return facts, description


def setting(cfg: DictConfig, key: str) -> Any:
    """A generation setting (conf/generation/default.yaml); a config without it is an error, not a default here."""
    if key not in cfg:
        raise PipesynthError(
            f"the generation config has no `{key}`",
            "compose conf/generation/default.yaml (conf/generate.yaml and conf/solution/generate.yaml include it)",
        )
    return cfg[key]


def coder_facts(facts: dict[str, Any], public_dir: Path) -> dict[str, Any]:
    """The public facts plus the data files' columns (what an LLM coder needs to write loading code)."""
    files = {}
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        path = public_dir / name
        if path.is_file():
            files[name] = {"columns": list(pd.read_csv(path, nrows=0).columns)}
    return {**facts, "files": files}


def instruction_prompt(cfg: DictConfig, client: Any) -> DictConfig:
    """The prompt template for the instruction stage: the one the adapter was trained with, when its training
    run saved one (unless `prompt_from_adapter: false`), else `cfg.prompt`. An adapter sampled through
    another template than its training one writes off-format text, so a mismatch is resolved and logged."""
    trained = getattr(inner_client(client), "train_prompt_cfg", None)
    if trained is None or not setting(cfg, "prompt_from_adapter"):
        return cfg.prompt
    configured = OmegaConf.to_container(cfg.prompt, resolve=True)
    if OmegaConf.to_container(trained, resolve=True) != configured:
        log.warning(
            "the adapter was trained with prompt %r, the config names %r: rendering instructions with the "
            "adapter's (prompt_from_adapter=false keeps the config's)",
            trained.get("name"),
            cfg.prompt.get("name"),
        )
    return trained


def build_instructor(cfg: DictConfig, client: Any, retriever: Any = None) -> InstructionGenerator:
    """The instruction stage of a generation config (template, k, sampling, sections, retrieval, decide);
    `retriever` reuses an already built corpus index (else one is built when the config asks for it)."""
    prompt_cfg = instruction_prompt(cfg, client)
    template = build_template(prompt_cfg)
    if template.requires_tokenizer and (tokenizer := tokenizer_of(client)) is not None:
        template = build_template(prompt_cfg, tokenizer=tokenizer)  # else chat messages (sends_messages)
    retrieval = str((cfg.get("retrieval") or {}).get("mode", "none"))
    decide = str((cfg.get("decide") or {}).get("mode", "model"))
    if retriever is None:
        retriever = build_retriever(cfg)
    return InstructionGenerator(
        template=template,
        categories=load_metric_categories(cfg.get("metric_categories")),
        k=int(setting(cfg, "k")),
        temperature=float(setting(cfg, "temperature")),
        max_tokens=setting(cfg, "max_tokens"),
        max_resample=int(setting(cfg, "max_resample")),
        resample_budget_s=setting(cfg, "resample_budget_s"),
        max_prompt_tokens=setting(cfg, "max_prompt_tokens"),
        max_description_chars=setting(cfg, "max_description_chars"),
        seed=int(cfg.get("seed", 0)),
        sampling=str(setting(cfg, "sampling")),
        sections=OmegaConf.to_container(cfg.sections, resolve=True) if cfg.get("sections") else None,
        retrieval=retrieval,
        decide=decide,
        retriever=retriever if (retrieval != "none" or decide == "vote") else None,
        context_format=context_format(cfg.get("context")),
    )


def _with_client(node: DictConfig, main_client: Any) -> Any:
    """Instantiate a coder/refiner config; its `client` key (if any) gets the pipeline's LLM unless it names one."""
    if "client" not in node:
        return instantiate(node, _convert_="all")
    own = node.get("client")
    client = SerialClient(build_client(own)) if own else main_client
    return instantiate(node, client=client, _convert_="all")


class Pipeline:
    """Instruction generation, refinement, coding and verification, built once and run per task."""

    def __init__(
        self,
        client: Any,
        instructor: InstructionGenerator,
        refiner: Any,
        coder: Coder,
        sandbox: Any,
        repair_rounds: int = 2,
        verify: str = "auto",
        keep_work: bool = False,
        config: dict[str, Any] | None = None,
        search: Any = None,
        budget_s: float | None = None,
    ) -> None:
        if verify not in VERIFY_MODES:
            raise PipesynthError(f"verify={verify!r} is not one of {VERIFY_MODES}", "use verify=auto")
        self.client = client
        self.instructor = instructor
        self.refiner = refiner
        self.coder = coder
        self.sandbox = sandbox
        self.repair_rounds = max(0, int(repair_rounds))
        self.verify = verify
        self.keep_work = keep_work
        self.config = config or {}
        self.search = search  # src.pipeline.search.Search (conf/search/), None: no search
        # wall seconds per task, instructions to the chosen script's graded run (the search gets what is left)
        self.budget_s = float(budget_s) if budget_s else None

    @classmethod
    def from_config(cls, cfg: DictConfig, client: Any = None) -> Pipeline:
        """Build from a config holding llm, refine, coder, sandbox, prompt, metric_categories and the settings
        k, temperature, max_tokens, max_resample, resample_budget_s, max_prompt_tokens, repair_rounds, verify,
        run_timeout_s, budget_s (wall seconds per task), threads (torch CPU threads for a local model: an int, `auto` or null for torch's default)."""
        for key in ("llm", "refine", "coder", "sandbox", "prompt"):
            if cfg.get(key) is None:
                raise PipesynthError(
                    f"the generation config has no `{key}`", f"add `- {key}: ...` to its defaults"
                )
        # a local model on a few shared cores: extra threads spin against each other (10x slower seen)
        set_torch_threads(setting(cfg, "threads"))
        client = SerialClient(client if client is not None else build_client(cfg.llm))
        instructor = build_instructor(cfg, client)
        sandbox_kwargs = {}
        if cfg.get("run_timeout_s"):
            sandbox_kwargs["timeout_s"] = float(cfg.run_timeout_s)
        return cls(
            client=client,
            instructor=instructor,
            refiner=_with_client(cfg.refine, client),
            coder=_with_client(cfg.coder, client),
            sandbox=instantiate(cfg.sandbox, **sandbox_kwargs),
            repair_rounds=int(setting(cfg, "repair_rounds")),
            verify=str(setting(cfg, "verify")),
            keep_work=bool(setting(cfg, "keep_work")),
            search=instantiate(cfg.search, _convert_="all") if cfg.get("search") else None,
            budget_s=setting(cfg, "budget_s"),
            config={
                "llm": getattr(client, "model_id", "?"),
                "refine": getattr(cfg.refine, "name", None) or str(cfg.refine.get("_target_")),
                "coder": cfg.coder.get("name"),
                "prompt": instructor.template.name,
                "k": instructor.k,
                "temperature": instructor.temperature,
                "max_resample": instructor.max_resample,
                "sampling": instructor.sampling,
                "retrieval": instructor.retrieval,
                "decide": instructor.decide,
                "repair_rounds": int(setting(cfg, "repair_rounds")),
                "verify": str(setting(cfg, "verify")),
                "search": (cfg.get("search") or {}).get("name"),
                "budget_s": setting(cfg, "budget_s"),
            },
        )

    # ------------------------------------------------------------------ one task
    def run(self, public_dir: str | Path, out_dir: str | Path, seed: int = 0) -> GenerationResult:
        """Generate a solution for the task in `public_dir`; writes journal.json, instruction.md, solution.py."""
        started = time.perf_counter()
        public_dir, out_dir = Path(public_dir).resolve(), Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        work = out_dir / "work"
        facts, description = read_public_task(public_dir)
        slug = str(facts["slug"])
        journal = Journal(slug, str(facts["metric"]), bool(facts["higher_is_better"]))
        journal.meta.update(config=self.config, seed=seed, public_dir=str(public_dir))
        timings: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            timings[name] = round(now - since, 3)
            return now

        t = time.perf_counter()
        candidates = self.instructor.generate(self.client, facts, description, journal, seed=seed)
        t = lap("instruct_s", t)
        code_facts = coder_facts(facts, public_dir)
        ctx = RefineContext(
            facts=code_facts,
            description=description,
            candidates=candidates,
            journal=journal,
            public_dir=public_dir,
            work_dir=work,
            client=self.client,
            coder=self.coder,
            sandbox=self.sandbox,
            repair_rounds=self.repair_rounds,
            seed=seed,
        )
        refined: Refined = self.refiner.refine(ctx)
        t = lap("refine_s", t)
        if self.search is not None and self.verify != "never":
            # improvement loop over the refined solution, chosen on inner validation only (src.pipeline.search)
            deadline = started + self.budget_s if self.budget_s else None
            refined = self.search.search(ctx, refined, deadline=deadline)
            t = lap("search_s", t)
        notes = list(refined.notes)

        validation_score = refined.validation_score
        if refined.code is None:
            code = self.coder.generate(refined.text, code_facts)
            t = lap("code_s", t)
            if self.verify == "never":
                node = journal.add("code", parent=refined.node_id)
                record_code(node, code)
                node.finish("pending")
                final: Node = node
                final_code: CodeResult = code
                status = "unchecked"
            else:
                done = self._verify(
                    code, code_facts, journal, refined.node_id, public_dir, work, stage="code"
                )
                final, final_code = done.node, done.code
                status = "ok" if done.outcome.ok else "failed"
        else:
            final, final_code = journal[refined.code_node_id], refined.code  # type: ignore[index]
            ran_ok = refined.validated
            if self.verify == "always" or (self.verify == "auto" and not ran_ok):
                done = self._verify(
                    refined.code, code_facts, journal, refined.code_node_id, public_dir, work, stage="verify"
                )
                final, final_code = done.node, done.code
                status = "ok" if done.outcome.ok else "failed"
                if final_code is not refined.code:
                    validation_score = None  # the repaired script was not validated
            else:
                status = "ok" if ran_ok else "failed"
        lap("verify_s", t)

        journal.choose(final)
        result = GenerationResult(
            task=slug,
            status=status,
            instruction=refined.text,
            code=final_code.code,
            out_dir=out_dir,
            journal=journal,
            rank=refined.rank,
            validation_score=validation_score,
            timings=timings,
            notes=notes,
        )
        timings["total_s"] = round(time.perf_counter() - started, 3)
        journal.meta.update(
            status=status, timings=timings, rank=refined.rank, validation_score=validation_score
        )
        self._write(result, facts)
        keep_derived(work, (DERIVED_DIR,), out_dir)  # the search's label-free caches, for the final run
        if not self.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "%s: %s in %.1fs (rank %s, validation %s)",
            slug,
            status,
            timings["total_s"],
            refined.rank,
            validation_score,
        )
        return result

    def _verify(
        self,
        code: CodeResult,
        facts: dict[str, Any],
        journal: Journal,
        parent: str,
        public_dir: Path,
        work: Path,
        stage: str,
    ) -> Attempted:
        runner = PublicRunner(self.sandbox, public_dir, work / "public_runs")
        return run_with_repair(
            self.coder, code, facts, runner, journal, parent, self.repair_rounds, stage=stage
        )

    def _write(self, result: GenerationResult, facts: dict[str, Any]) -> None:
        out = result.out_dir
        (out / "solution.py").write_text(result.code, encoding="utf-8")
        score = (
            f"{result.validation_score:.6g} ({facts['metric']}, validation split of the public train)"
            if result.validation_score is not None
            else "none"
        )
        header = (
            f"# Instruction: {facts.get('title') or facts['slug']}\n\n"
            f"- refinement: {self.config.get('refine')}; rank: {result.rank}; status: {result.status}\n"
            f"- validation score: {score}\n\n"
        )
        (out / "instruction.md").write_text(header + result.instruction.strip() + "\n", encoding="utf-8")
        result.journal.save(out / "journal.json")


def generate_solution(
    public_dir: str | Path,
    out_dir: str | Path,
    cfg: DictConfig | None = None,
    *,
    pipeline: Pipeline | None = None,
    seed: int = 0,
) -> GenerationResult:
    """Generate a solution for the prepared task whose public files are in `public_dir` (see `Pipeline`)."""
    if pipeline is None:
        if cfg is None:
            raise PipesynthError(
                "generate_solution needs a config or a built pipeline", "pass cfg=... or pipeline=..."
            )
        pipeline = Pipeline.from_config(cfg)
    return pipeline.run(public_dir, out_dir, seed=seed)
