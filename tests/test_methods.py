"""The two named methods (issue 27): `method=paper` is the paper's pipeline exactly and runs through
`src.evaluate`, its record saying so; `method=pipesynth` is the default."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from src.evaluate import _rewrite_solution_path, evaluate
from src.pipeline.journal import Journal

REPO = Path(__file__).resolve().parent.parent


def test_both_methods_compose_as_named() -> None:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        paper = compose("generate", overrides=["task=titanic", "method=paper"])
        ours = compose("generate", overrides=["task=titanic"])
        ev = compose("evaluate", overrides=_rewrite_solution_path(["solution=generate", "method=paper"]))
        table1 = compose("evaluate", overrides=["+experiment=paper_table1"])
    assert (paper.method, paper.k, paper.temperature, paper.decide.mode) == ("paper", 3, 0.7, "model")
    assert paper.refine.name == "multi_role" and paper.coder.name == "llm" and paper.search.policy == "none"
    assert (
        ours.method == "pipesynth"
        and ours.search.policy == "tree"
        and ours.coder._target_.endswith("CompilerCoder")
    )
    assert ev.solution.name == "generate-paper" and ev.solution.coder.name == "llm"
    assert table1.solution.name == "generate" and table1.suite.name == "paper"  # not the constant baseline


def test_the_paper_method_runs_and_its_record_says_which(tmp_path: Path, shared_dir: Path) -> None:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.shared_dir={shared_dir}", "progress=false", "show_table=false", "logger=none",
                "name=dev/test", "tasks=titanic",
                *_rewrite_solution_path(["solution=generate", "method=paper"]),
                "model@solution.llm.model=tiny_llama", "solution.llm.adapter=null", "solution.llm.device=cpu",
                "solution.max_tokens=24", "solution.coder.max_tokens=48", "solution.coder.integration_max_tokens=48",
                "solution.repair_rounds=1",
            ],
        )  # fmt: skip
    [record] = evaluate(cfg)["records"]
    meta = record["solution_meta"]
    assert record["solution"] == "generate-paper" and meta["method"] == "paper"
    assert meta["refine"] == {"refinements": 1, "fallbacks": 0, "picked_by": meta["refine"]["picked_by"]}
    journal = Journal.load(meta["journal"])
    assert not journal.by_stage("search")  # no search in the paper's method
    code = journal.by_stage("code")
    # the LLM coder wrote it block by block: never the compiler (whose plans hold `models`) in its place
    assert code and all(n.plan["coder"] == "llm" and "models" not in n.plan for n in code)
    # a random model's code does not run: the record says so with its reason, rather than a compiled stand-in
    assert record["status"] in ("ok", "invalid", "failed") and (
        record["status"] == "ok" or record["invalid_reason"]
    )
