"""The ablation that isolates each part (issue 27 items 4-5): every arm composes as named, the nonsense control
is really nonsense (never the model's text passed through), retrieval_only asks the model for nothing, and the
axis effects pair records resample by resample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from src.evaluate import evaluate
from src.llm.base import ChatRequest
from src.llm.nonsense import WORDS, nonsense_reply
from src.pipeline.code.compiler.parse import find_models
from src.pipeline.journal import Journal
from src.reporting.tables import ablation_effects, arm_checks, arm_of

REPO = Path(__file__).resolve().parent.parent
ARMS = ("adapter", "base", "retrieval_only", "nonsense")


def test_every_arm_of_the_multirun_composes_as_named() -> None:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        grid = compose("evaluate", overrides=["+experiment=ablation"], return_hydra_config=True)
        params = grid.hydra.sweeper.params
        assert params["refine@solution.refine"] == "none,multi_role,execution"
        assert params["+instructions"] == ",".join(ARMS)
        for refine in params["refine@solution.refine"].split(","):
            for arm in params["+instructions"].split(","):
                cfg = compose(
                    "evaluate",
                    overrides=[
                        "+experiment=ablation",
                        f"+instructions={arm}",
                        f"refine@solution.refine={refine}",
                    ],
                )
                s = cfg.solution
                assert s.name == f"{refine}/none/{arm}" and arm_of(s.name) == {
                    "refine": refine, "search": "none", "instructions": arm, "k": "k3"
                }  # fmt: skip
                assert s.refine.name == refine and s.search.policy == "none" and s.decide.mode == "model"
                assert (s.llm.model == "nonsense") == (arm == "nonsense")
                assert (s.retrieval.mode == "only") == (arm == "retrieval_only")
                assert s.llm.get("adapter") is None if arm in ("base", "nonsense") else s.llm.adapter_required
        k1 = compose(
            "evaluate",
            overrides=[
                "+experiment=ablation",
                "+instructions=adapter",
                "solution.k=1",
                "solution.arm_tag=-k1",
            ],
        )
        assert k1.solution.name == "execution/none/adapter-k1" and arm_of(k1.solution.name)["k"] == "k1"


def test_nonsense_names_no_model_and_no_step() -> None:
    for seed in range(20):
        text = nonsense_reply(ChatRequest(prompt=f"Write the model architecture for task {seed}", seed=seed))
        assert len(text.split()) >= 20 and not find_models(text)
        assert set(text.lower().replace(".", "").split()) <= set(WORDS)
    a = nonsense_reply(ChatRequest(prompt="p", seed=0))
    assert (
        a
        == nonsense_reply(ChatRequest(prompt="p", seed=0))
        != nonsense_reply(ChatRequest(prompt="p", seed=1))
    )


def _run_arm(tmp_path: Path, shared_dir: Path, arm: str) -> dict:
    tiny = (  # a tiny random model where a local one is loaded (the refiner of retrieval_only would use it)
        []
        if arm == "nonsense"
        else ["model@solution.llm.model=tiny_llama", "solution.llm.adapter=null", "solution.llm.device=cpu"]
    )
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                "+experiment=ablation", f"+instructions={arm}", "refine@solution.refine=none",
                f"paths.output_dir={tmp_path / arm}", f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.shared_dir={shared_dir}", "progress=false", "show_table=false", "logger=none",
                "name=dev/test", "tasks=titanic", "fail_on_invalid=false",
                "solution.max_tokens=24", *tiny,
            ],
        )  # fmt: skip
    [record] = evaluate(cfg)["records"]
    return record


def test_the_nonsense_arm_writes_nonsense_and_retrieval_only_asks_no_model(
    tmp_path: Path, shared_dir: Path
) -> None:
    record = _run_arm(tmp_path, shared_dir, "nonsense")
    meta = record["solution_meta"]
    assert record["solution"] == "none/none/nonsense" and meta["instructions"]["llm"] == "nonsense"
    journal = Journal.load(meta["journal"])
    picked = [n for n in journal.by_stage("instruction") if n.status in ("ok", "fallback")]
    assert len(picked) == 3 and meta["instructions"]["model"] == 3
    assert all((n.sections or {}).get("architecture") for n in picked)  # bodies written, not empty
    for node in picked:  # each section body is the control's words: the model's text never passes through
        for body in (node.sections or {}).values():
            words = set((body or "").lower().replace(".", "").split())
            assert words <= set(WORDS), words - set(WORDS)

    record = _run_arm(tmp_path, shared_dir, "retrieval_only")
    made = record["solution_meta"]["instructions"]
    assert record["solution"] == "none/none/retrieval_only"
    assert made["model"] == 0 and made["retrieved"] == 3  # the corpus wrote all three, the model none
    journal = Journal.load(record["solution_meta"]["journal"])
    assert not any(n.llm for n in journal.by_stage("instruction"))
    assert record["status"] == "ok", record.get("invalid_reason")


def test_axis_effects_pair_the_same_resamples_and_checks_count_what_ran() -> None:
    rng = np.random.default_rng(0)
    records = []
    for task in ("a", "b"):
        for seed in (0, 1):
            noise = rng.normal(size=200)  # the test rows' luck, shared by every arm of (task, seed)
            for refine, lift in (("none", 0.0), ("multi_role", 5.0)):
                for arm, text in (("adapter", 0.0), ("nonsense", 0.0)):
                    samples = 50 + 10 * noise + lift + text
                    records.append({
                        "task": task, "seed": seed, "solution": f"{refine}/none/{arm}",
                        "beaten_samples": samples.round(2).tolist(), "score": 1.0,
                        "solution_meta": {"instructions": {"model": 3, "llm": "local:x"},
                                          "refine": {"refinements": int(refine != "none"), "fallbacks": 0}},
                    })  # fmt: skip
    effects = ablation_effects(records).set_index(["axis", "level"])
    refine = effects.loc[("refine", "multi_role")]
    assert refine["pairs"] == 8 and float(refine["effect (points)"]) == 5.0 and refine["effect"] == "yes"
    # paired: the shared noise cancels, so the interval is tight around the true +5
    assert refine["95% interval"] == "[+5.0, +5.0]"
    text = effects.loc[("instructions", "adapter")]
    assert float(text["effect (points)"]) == 0.0 and text["effect"] == "not shown"
    checks = arm_checks(records).set_index("arm")
    assert checks.loc["multi_role/none/adapter", "refinements"] == 4
    assert (
        checks.loc["none/none/nonsense", "model"] == 12
        and checks.loc["none/none/nonsense", "llm"] == "local:x"
    )
    assert not arm_checks([{**records[0], "solution": "generate"}]).shape[0]  # not an arm: not listed
    json.dumps(records)  # records stay plain JSON
