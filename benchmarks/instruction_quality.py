"""Instruction quality: are the instructions the instruction stage writes well formed, actionable and right?

    .venv/bin/python benchmarks/instruction_quality.py --limit 20                       # conf/generate.yaml's llm
    .venv/bin/python benchmarks/instruction_quality.py --limit 30 model@llm.model=qwen25_coder_05b \
        llm.adapter=null prompt=chat_instruct
    .venv/bin/python benchmarks/instruction_quality.py --adapter outputs/train/<exp>/<time>/adapter
    .venv/bin/python benchmarks/instruction_quality.py --variants majority,retrieval_only --limit 0   # no model

Arguments after the options are Hydra overrides of conf/generate.yaml (the llm, prompt, sampling, section
budgets...). Two sets of tasks:
(a) corpus competitions the model under test never trained on, each with its reference (rank-1) instruction:
    without `--adapter`, leave-one-competition-out over every eligible competition (its rank-1 instruction names
    a model family; the dev and paper suites' competitions are left out as in the index), the competition
    itself excluded from retrieval and from the majority; with `--adapter`, the training run's held-apart
    competitions (its validation split by competition, rebuilt from the run's saved config).
(b) the dev tasks (shared/data/kaggle, task.json + description.md).
Variants (`--variants`, side by side, the same competitions): majority (the corpus's most popular family for
the data type x metric, no model), retrieval_only (the nearest competition's rank-1 instruction, no model),
zero_shot (retrieval=none decide=model), context (retrieval=context), vote (decide=vote), free (sampling=free,
the format ablation), adapter (`--adapter`), default (the composed config as is).
Per variant, each rate with n and a 95 % Wilson interval: well-formed (all three core sections); actionable (the
compiler's parse names a model family and a concrete preprocessing or validation choice, not the data type's
default plan; its parts are printed too); family agreement with the reference instruction's family, beside the
majority baseline on the same competitions (paired: wins / losses, ratio with a paired bootstrap interval);
distinct plans among the k ranks (dev tasks); seconds per instruction (model time, cache hits excluded).

CPU time: `--limit` competitions, `--dev-limit` tasks, `--k` ranks on the corpus part (agreement uses rank 1;
the dev part always samples `k` from the config), the section budgets of conf/prompt/sections/. Every answer is
kept in the LLM response cache (llm.cache), so a rerun with the same settings costs nothing.
The last two lines: `family_agreement_vs_majority=<ratio>` and `well_formed_rate=<rate>` of the default variant.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from benchmarks.retrieval_quality import wilson  # noqa: E402
from src.corpus.contamination import exclusion_for_suites  # noqa: E402
from src.corpus.families import family_of  # noqa: E402
from src.corpus.instruction import parse_instruction  # noqa: E402
from src.corpus.metric_categories import load_metric_categories  # noqa: E402
from src.corpus.retrieval import corpus_rows  # noqa: E402
from src.errors import PipesynthError  # noqa: E402
from src.llm import build_client  # noqa: E402
from src.pipeline.code.compiler.parse import parse_plan  # noqa: E402
from src.pipeline.generate import SerialClient, build_instructor, read_public_task  # noqa: E402
from src.pipeline.instruct import CorpusRetriever, task_prompt_fields, well_formed  # noqa: E402
from src.pipeline.journal import Journal  # noqa: E402

MODEL_FREE = ("majority", "retrieval_only")
VARIANT_OVERRIDES: dict[str, list[str]] = {
    "default": [],
    "zero_shot": ["retrieval=none", "decide=model"],
    "context": ["retrieval=context", "decide=model"],
    "vote": ["retrieval=none", "decide=vote", "sampling=guided"],
    "free": ["retrieval=none", "decide=model", "sampling=free"],
}
REGRESSION = {"mse", "mae", "percentage_errors", "r2_score", "correlation", "reconstruction"}
DEFAULT_PLAN = "default plan for the data type"


@dataclass
class Item:
    """One task of the benchmark: a corpus competition (with its reference family) or a dev task."""

    key: str
    facts: dict[str, Any]
    description: str
    reference: str | None = None  # the rank-1 instruction's family (corpus competitions)
    corpus: bool = True


@dataclass
class Scores:
    """What one variant did on the items, in item order."""

    well_formed: list[bool] = field(default_factory=list)
    actionable: list[bool] = field(default_factory=list)
    model_named: list[bool] = field(default_factory=list)
    preprocessing: list[bool] = field(default_factory=list)
    validation: list[bool] = field(default_factory=list)
    agree: dict[str, bool] = field(default_factory=dict)  # corpus key -> family agrees with the reference
    distinct: list[int] = field(default_factory=list)  # dev tasks: distinct plans among the k ranks
    seconds: float = 0.0
    timed: int = 0  # instructions that really ran the model (cache misses)


def parse_facts(item: Item) -> dict[str, Any]:
    """Facts the compiler's parser can plan on: the task's own, or a stand-in for a corpus competition."""
    if not item.corpus:
        return item.facts
    parts = str(item.facts["data_type"])
    data_type = "text" if "text" in parts and "tabular" not in parts else "tabular"
    regression = str(item.facts["metric_category"]) in REGRESSION
    return {
        "data_type": data_type,
        "task_type": "regression" if regression else "binary_classification",
        "metric": "rmse" if regression else "roc_auc",
        "targets": ["target"],
        "id_column": "id",
    }


@lru_cache(maxsize=64)
def default_plan(facts_json: str) -> Any:
    """The compiler's plan for an instruction that says nothing: the data type's default (what a fallback gets)."""
    return parse_plan("", json.loads(facts_json))


def judge(text: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Well-formedness, the compiler's reading and the family of one instruction."""
    plan = parse_plan(text, facts)
    base = default_plan(json.dumps(facts, sort_keys=True))
    named = not any(DEFAULT_PLAN in note for note in plan.notes) and plan.models != base.models
    pre = plan.preprocessing != base.preprocessing
    val = plan.validation != base.validation
    signature = json.dumps(
        {
            "models": [m.family for m in plan.models],
            "pre": str(plan.preprocessing),
            "val": str(plan.validation),
        },
        sort_keys=True,
    )
    return {
        "well_formed": well_formed(parse_instruction(text)),
        "model_named": named,
        "preprocessing": pre,
        "validation": val,
        "actionable": named and (pre or val),
        "family": family_of(text),
        "signature": signature,
    }


def record(scores: Scores, item: Item, texts: list[str], family: str | None = None) -> None:
    """Score rank 1 (and the distinct plans of all ranks on a dev task)."""
    facts = parse_facts(item)
    verdicts = [judge(t, facts) for t in texts]
    first = verdicts[0]
    for name in ("well_formed", "actionable", "model_named", "preprocessing", "validation"):
        getattr(scores, name).append(bool(first[name]))
    if item.corpus:
        scores.agree[item.key] = (family or first["family"]) == item.reference
    elif len(texts) > 1:
        scores.distinct.append(len({v["signature"] for v in verdicts}))


def corpus_items(rows: Any, exclude: set[str], keep: set[str] | None, limit: int) -> list[Item]:
    """Eligible corpus competitions (rank-1 names a family, not excluded), in a fixed pseudo-random order."""
    items = []
    for competition, group in rows.sort_values("rank", kind="stable").groupby("competition", sort=True):
        if competition in exclude or (keep is not None and competition not in keep):
            continue
        top = group.iloc[0]
        family = family_of(str(top["instruction"]))
        if family is None:
            continue
        facts = {
            "slug": str(competition),
            "data_type": str(top["data_type"]),
            "metric": str(top["metric_category"]),
            "metric_category": str(top["metric_category"]),
            "exclude_competitions": [str(competition)],  # leave-one-competition-out
        }
        items.append(Item(str(competition), facts, str(top["description"]), family))
    # a stable order that does not follow the names (so --limit takes a spread of data types)
    items.sort(key=lambda it: hashlib.sha256(it.key.encode()).hexdigest())
    return items[:limit] if limit >= 0 else items


def held_apart(adapter: str) -> set[str]:
    """The competitions the adapter's training run never trained on (its split rebuilt from its saved config)."""
    from src.corpus.build import build_corpus_with_report
    from src.corpus.prompts import build_template
    from src.llm.local import resolve_adapter

    path = resolve_adapter(adapter, REPO_ROOT / "outputs" / "train")
    assert path is not None
    for candidate in (path / "pipesynth_config.yaml", path.parent / ".hydra" / "config.yaml"):
        if candidate.is_file():
            run_cfg = OmegaConf.load(candidate)
            break
    else:
        raise PipesynthError(
            f"the adapter {path} has no saved training config, so its held-apart competitions are unknown",
            "pass an adapter written by python -m src.train (it saves pipesynth_config.yaml beside it)",
        )
    if run_cfg.get("data") is not None and run_cfg.data.get("contamination") is None:
        # a run from before the contamination exclusion trained on every competition's rows
        run_cfg.data.contamination = {"exclude_suites": [], "exclude_tasks": []}
    # never trained on: every corpus competition outside the rows the run really trained on
    tokenizer = None
    if build_template(run_cfg.prompt).requires_tokenizer:  # a chat-template adapter (e.g. chat_instruct)
        from src.training.base_models import load_tokenizer

        tokenizer = load_tokenizer(run_cfg.model, REPO_ROOT / ".cache")
    trained = set(build_corpus_with_report(run_cfg, tokenizer=tokenizer).dataset["train"]["competition"])
    return set(corpus_rows(str(run_cfg.paths.corpus_path))["competition"]) - trained


def interval_ratio(a: list[bool], b: list[bool], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % paired-bootstrap interval of rate(a) / rate(b) over the same items."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    num, den = x[idx].mean(axis=1), y[idx].mean(axis=1)
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    ratios = ratios[~np.isnan(ratios)]
    return (float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))) if len(ratios) else (0, 0)


def rate(hits: list[bool]) -> str:
    if not hits:
        return "-"
    k, n = sum(hits), len(hits)
    low, high = wilson(k, n)
    return f"{k}/{n}={k / n:.2f} [{low:.2f},{high:.2f}]"


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("generate", overrides=["task=benchmark", "paths.output_dir=/tmp/unused", *overrides])


def run_model_variant(
    name: str, cfg: DictConfig, client: Any, retriever: CorpusRetriever, items: list[Item], k_corpus: int
) -> Scores:
    scores = Scores()
    gens = {}
    for corpus in (True, False):
        k = k_corpus if corpus else int(cfg.k)
        gens[corpus] = build_instructor(OmegaConf.merge(cfg, {"k": k}), client, retriever)
    for n, item in enumerate(items, 1):
        journal = Journal(item.key, str(item.facts.get("metric")), True)
        started = time.perf_counter()
        candidates = gens[item.corpus].generate(client, item.facts, item.description, journal)
        wall = time.perf_counter() - started
        nodes = [nd for nd in journal.nodes if nd.stage == "instruction" and nd.llm]
        misses = sum(int(nd.llm["requests"]) - int(nd.llm["cache_hits"]) for nd in nodes)
        if misses:
            scores.seconds += wall
            scores.timed += len([c for c in candidates if c.source == "model"])
        texts = [c.text for c in candidates if c.source == "model"]
        record(scores, item, texts)
        print(
            f"  [{name} {n}/{len(items)}] {item.key[:40]:<40} wf={scores.well_formed[-1]:d} "
            f"act={scores.actionable[-1]:d} fam={family_of(texts[0])} ref={item.reference} "
            f"{wall:.1f}s{' (cached)' if not misses else ''}",
            flush=True,
        )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=20, help="corpus competitions (-1: all eligible)")
    parser.add_argument("--dev-limit", type=int, default=9, help="dev tasks (0: none)")
    parser.add_argument(
        "--k", type=int, default=1, help="ranks per corpus competition (agreement uses rank 1)"
    )
    parser.add_argument("--variants", default="majority,retrieval_only,zero_shot,context,vote")
    parser.add_argument("--adapter", default=None, help="a trained adapter: adds the `adapter` variant")
    parser.add_argument("--embedder", default=None, help="override retrieval.embedder._target_ (e.g. TF-IDF)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/generate.yaml")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.adapter and "adapter" not in variants:
        variants.append("adapter")
    if "default" not in variants and any(v not in MODEL_FREE for v in variants):
        variants.append("default")  # the closing figures are the default configuration's
    unknown = [v for v in variants if v not in (*MODEL_FREE, *VARIANT_OVERRIDES, "adapter")]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; use {[*MODEL_FREE, *VARIANT_OVERRIDES, 'adapter']}")

    base_overrides = list(args.overrides)
    cfg = compose_cfg(base_overrides)
    retrieval_cfg = OmegaConf.to_container(cfg.retrieval, resolve=True)
    if args.embedder:
        retrieval_cfg["embedder"] = {"_target_": args.embedder}
    rows = corpus_rows(retrieval_cfg["corpus_path"])
    suites = exclusion_for_suites(
        retrieval_cfg.get("exclude_suites") or [], rows, retrieval_cfg["data_dir"], extra_tasks=()
    )
    vote_cfg = OmegaConf.to_container(compose_cfg(["decide=vote"]).decide)
    retriever = CorpusRetriever(retrieval_cfg, rows, vote=vote_cfg, exclusion=suites)
    keep = held_apart(args.adapter) if args.adapter else None
    items = corpus_items(rows, set(suites.competitions), keep, args.limit)
    dev_dir = Path(str(cfg.paths.data_dir))
    dev_slugs = list(OmegaConf.load(REPO_ROOT / "conf" / "suite" / "dev.yaml").tasks)[
        : max(0, args.dev_limit)
    ]
    for slug in dev_slugs:
        facts, description = read_public_task(dev_dir / slug)
        items.append(Item(slug, facts, description, None, corpus=False))
    n_corpus = sum(it.corpus for it in items)
    print(
        f"corpus competitions: n={n_corpus} ({'held apart by the adapter run' if keep else 'leave-one-out'}; "
        f"dev+paper excluded: {len(suites.competitions)}), dev tasks: n={len(items) - n_corpus}"
    )

    results: dict[str, Scores] = {}
    majority: dict[str, bool] = {}
    for item in items:
        if not item.corpus:
            continue
        fam = retriever.index.majority(item.facts["data_type"], item.facts["metric_category"], [item.key])
        majority[item.key] = fam == item.reference
    if "majority" in variants:
        results["majority"] = Scores(agree=dict(majority))
    if "retrieval_only" in variants:
        scores = Scores()
        categories = load_metric_categories(cfg.get("metric_categories"))
        for item in items:
            data_type, category = task_prompt_fields(item.facts, categories)
            guidance = retriever.guidance(
                item.facts, item.description, data_type, category, "candidates", "model"
            )
            record(scores, item, [c["text"] for c in guidance.candidates[:1]] or [""])
        results["retrieval_only"] = scores

    client = None
    for name in variants:
        if name in MODEL_FREE:
            continue
        overrides = list(VARIANT_OVERRIDES.get(name, []))
        if name == "adapter":
            overrides = [f"llm.adapter={args.adapter}", "llm.adapter_required=true"]
        vcfg = compose_cfg([*base_overrides, *overrides])
        if name == "adapter" or client is None or getattr(client, "_llm_key", None) != str(vcfg.llm):
            client = SerialClient(build_client(vcfg.llm))
            client._llm_key = str(vcfg.llm)  # type: ignore[attr-defined]
        print(
            f"variant {name}: llm={client.model_id} sampling={vcfg.sampling} "
            f"retrieval={vcfg.retrieval.mode} decide={vcfg.decide.mode} prompt={vcfg.prompt.name}",
            flush=True,
        )
        results[name] = run_model_variant(name, vcfg, client, retriever, items, args.k)

    keys = [it.key for it in items if it.corpus]
    print()
    print(
        f"{'variant':<15} {'well-formed':<22} {'actionable':<22} {'family agrees':<22} "
        f"{'majority (same)':<22} {'ratio [95%]':<20} {'+/-':<7} {'distinct>=2 (dev)':<22} s/instr"
    )
    for name, s in results.items():
        agree = [s.agree[k] for k in keys if k in s.agree]
        maj = [majority[k] for k in keys if k in s.agree]
        ratio = (sum(agree) / sum(maj)) if agree and sum(maj) else float("nan")
        low, high = interval_ratio(agree, maj) if agree else (float("nan"), float("nan"))
        wins = sum(a and not b for a, b in zip(agree, maj, strict=True))
        losses = sum(b and not a for a, b in zip(agree, maj, strict=True))
        distinct = [d >= 2 for d in s.distinct]
        sec = f"{s.seconds / s.timed:.1f}" if s.timed else "-"
        print(
            f"{name:<15} {rate(s.well_formed):<22} {rate(s.actionable):<22} {rate(agree):<22} {rate(maj):<22} "
            f"{f'{ratio:.2f} [{low:.2f},{high:.2f}]':<20} {f'+{wins}/-{losses}':<7} {rate(distinct):<22} {sec}"
        )
        if s.well_formed:
            print(
                f"{'':<15} parts: model named {rate(s.model_named)}, preprocessing {rate(s.preprocessing)}, "
                f"validation {rate(s.validation)}; mean distinct plans {np.mean(s.distinct) if s.distinct else float('nan'):.2f}"
            )
    default = results.get("default") or results[variants[0]]
    agree = [default.agree[k] for k in keys]
    maj = [majority[k] for k in keys]
    print(f"family_agreement_vs_majority={(sum(agree) / sum(maj)) if sum(maj) else float('nan'):.3f}")
    print(
        f"well_formed_rate={(sum(default.well_formed) / len(default.well_formed)) if default.well_formed else float('nan'):.3f}"
    )


if __name__ == "__main__":
    main()
