"""Ranked instructions: the training template renders the prompts, one batch for k ranks, malformed answers are
resampled (only those, with new seeds, bounded) and a rank whose every attempt fails falls back, all journaled."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from src.config import REPO_ROOT
from src.corpus.metric_categories import load_metric_categories
from src.corpus.prompts import build_template
from src.errors import PipesynthError
from src.llm import ChatRequest, Completion
from src.llm.scripted import ScriptedClient
from src.pipeline.instruct import InstructionGenerator, plain_description, task_prompt_fields
from src.pipeline.journal import Journal
from src.training.base_models import load_tokenizer

GOOD = (
    "Data preprocessing:\n- impute the median\nModel architecture:\n- LightGBM\nModel training:\n- 5-fold CV"
)
FACTS = {
    "slug": "toy",
    "title": "Toy",
    "data_type": "tabular",
    "task_type": "binary_classification",
    "metric": "roc_auc",
    "higher_is_better": True,
    "targets": ["y"],
    "id_column": "id",
}


class CountingClient:
    """A scripted client that counts `complete` calls (batches) and keeps every request."""

    def __init__(self, reply: Any) -> None:
        self.inner = ScriptedClient(reply_fn=reply)
        self.batches: list[list[ChatRequest]] = []

    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.batches.append(list(requests))
        return self.inner.complete(requests)


def _generator(**kw: Any) -> InstructionGenerator:
    return InstructionGenerator(build_template("figure4"), load_metric_categories(), **kw)


def test_prompts_are_the_training_template_for_ranks_1_to_k() -> None:
    gen = _generator(k=3, max_description_chars=None)
    prompts = gen.prompts(FACTS, "Predict   whether y\nholds.")
    template = build_template("figure4")
    assert prompts == [
        template.render_prompt("Predict whether y holds.", "tabular data", "auc", r) for r in (1, 2, 3)
    ]
    assert (
        "This solution has the 2 place in rating. Data type: tabular data. Metric type is: auc." in prompts[1]
    )
    # task spellings -> corpus spellings, through conf/metric_categories/code4ml.yaml
    cats = load_metric_categories()
    assert task_prompt_fields({**FACTS, "data_type": "time_series", "metric": "rmsle"}, cats) == (
        "time series",
        "percentage_errors",
    )
    assert task_prompt_fields({**FACTS, "metric": "micro_f1"}, cats)[1] == "f_score_multiclass"


def test_description_is_cut_to_the_token_budget_with_the_models_tokenizer() -> None:
    tok = load_tokenizer(
        OmegaConf.load(REPO_ROOT / "conf" / "model" / "tiny_llama.yaml"), REPO_ROOT / ".cache"
    )
    gen = _generator(k=1, max_prompt_tokens=120)
    description = " ".join(f"word{i}" for i in range(400))
    [prompt] = gen.prompts(FACTS, description, tokenizer=tok)
    assert len(tok(prompt)["input_ids"]) <= 120
    assert prompt.endswith(". [/INST]") and "word0 word1" in prompt and "word399" not in prompt
    [short] = gen.prompts(FACTS, "A short task.", tokenizer=tok)
    assert "A short task. [/INST]" in short


def test_one_batch_resample_only_malformed_then_fallback(tmp_path: Path) -> None:
    # rank 1 is good at once, rank 2 on its second attempt, rank 3 never
    def reply(request: ChatRequest) -> str:
        rank = int(request.tag.split("rank")[1][0])
        attempt = request.seed // 1000
        if rank == 1 or (rank == 2 and attempt == 1):
            return GOOD + f" (rank {rank})"
        return "Model architecture:\n- something" if attempt == 0 else "??"

    client = CountingClient(reply)
    journal = Journal("toy", "roc_auc", True)
    gen = _generator(k=3, max_resample=2, temperature=0.7)
    candidates = gen.generate(client, FACTS, "Predict y.", journal, seed=5)

    assert [len(b) for b in client.batches] == [3, 2, 1]  # k prompts in one batch, then only the malformed
    first = client.batches[0]
    assert [r.seed for r in first] == [5, 5, 5] and {r.temperature for r in first} == {0.7}
    assert all(r.prompt is not None and r.messages is None for r in first)  # raw prompt: the training format
    assert [r.seed for r in client.batches[1]] == [1005, 1005]
    assert [r.seed for r in client.batches[2]] == [2005]

    assert [c.rank for c in candidates] == [1, 2, 3]
    assert candidates[0].text.endswith("(rank 1)") and not candidates[0].fallback
    assert candidates[1].text.endswith("(rank 2)") and candidates[1].attempts == 2
    # rank 3: every attempt malformed -> the most complete attempt (it had a section) is kept as is
    assert candidates[2].fallback and candidates[2].text == "Model architecture:\n- something"
    nodes = {n.id: n for n in journal.nodes}
    assert [n.stage for n in journal.nodes] == ["instruction"] * 6
    assert nodes[candidates[2].node_id].status == "fallback"
    rank3 = [n for n in journal.nodes if n.rank == 3]
    assert [n.attempt for n in rank3] == [0, 1, 2]
    assert rank3[1].parent == rank3[0].id and rank3[2].parent == rank3[1].id
    assert [n.status for n in rank3] == ["fallback", "malformed", "malformed"]
    assert rank3[0].meta["missing"] == ["preprocessing", "training"]
    assert json.loads(json.dumps(journal.to_dict()))["summary"]["instruction"] == {
        "ok": 2,
        "malformed": 3,
        "fallback": 1,
    }


def test_k_must_be_positive() -> None:
    from src.errors import PipesynthError

    with pytest.raises(PipesynthError, match="k=0"):
        _generator(k=0)


def test_resampling_stops_at_the_time_budget() -> None:
    client = CountingClient(lambda request: "no sections at all")
    journal = Journal("toy", "roc_auc", True)
    candidates = _generator(k=2, max_resample=3, resample_budget_s=1e-9).generate(client, FACTS, "d", journal)
    assert [len(b) for b in client.batches] == [2]  # the first round already used the budget
    assert all(c.fallback for c in candidates) and "not resampled" in journal.meta["resample_skipped"]


def test_a_round_that_would_overrun_the_budget_is_not_started() -> None:
    class SlowClient(CountingClient):
        def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
            time.sleep(0.2)  # every round takes 0.2 s
            return super().complete(requests)

    # 0.2 s spent + 0.2 s for another round > 0.3 s: no resample, though the budget is not yet spent
    client = SlowClient(lambda request: "no sections at all")
    journal = Journal("toy", "roc_auc", True)
    _generator(k=2, max_resample=3, resample_budget_s=0.3).generate(client, FACTS, "d", journal)
    assert len(client.batches) == 1 and "+ 0.2" in journal.meta["resample_skipped"]
    # a budget that fits the rounds: all of them run
    client = SlowClient(lambda request: "no sections at all")
    _generator(k=2, max_resample=2, resample_budget_s=30).generate(
        client, FACTS, "d", Journal("t", "auc", True)
    )
    assert len(client.batches) == 3


def test_descriptions_become_plain_text_like_the_corpus() -> None:
    markdown = (
        "## Description\n👋🛳️ Ahoy, **welcome**!\n\n![ship](https://x/y.png)\n"
        "Join our [Discord](https://discord.gg/kaggle) and read `train.csv`.\n"
    )
    assert plain_description(markdown) == "Description Ahoy, welcome! Join our Discord and read train.csv."
    prompt = _generator(k=1).prompts(FACTS, markdown)[0]
    assert "Problem: Description Ahoy, welcome! Join our Discord and read train.csv. [/INST]" in prompt


# ------------------------------------------------------------------ section-guided sampling, retrieval, vote
SECTIONS = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "prompt" / "sections" / "corpus.yaml"))


class FakeRetriever:
    """Fixed neighbours: two example instructions, one retrieved candidate, a voted family."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def guidance(
        self, facts: dict, description: str, data_type: str, metric: str, retrieval: str, decide: str
    ):
        from src.pipeline.instruct import Guidance

        self.calls.append((retrieval, decide))
        return Guidance(
            examples=["Data preprocessing:\n- scale\nModel architecture:\n- SVM\nModel training:\n- fit"]
            if retrieval == "context"
            else [],
            candidates=[{"text": GOOD, "competition": "c1", "similarity": 0.8}]
            if retrieval == "candidates"
            else [],
            family="gbdt" if decide == "vote" else None,
            phrase="gradient-boosted decision trees (LightGBM)" if decide == "vote" else None,
            settings={"n_estimators": 500} if decide == "vote" else {},
            meta={"excluded_competitions": ["toy-competition"], "neighbours": [{"competition": "c1"}]},
        )


def test_guided_sampling_writes_the_headings_one_batch_per_section() -> None:
    # the model rambles on into its own headings: its body is cut there, the sampler writes the next heading
    client = CountingClient(lambda r: " step one\nstep two\nModel training:\n- copied heading")
    gen = _generator(k=3, sampling="guided", sections=SECTIONS)
    journal = Journal("toy", "roc_auc", True)
    candidates = gen.generate(client, FACTS, "Predict y.", journal)
    assert len(client.batches) == 3  # one call per section, all three ranks in it
    assert [len(b) for b in client.batches] == [3, 3, 3]
    assert [b[0].prefix for b in client.batches][0] == " Data preprocessing:"  # figure4's completion lead
    last = client.batches[2][1]
    assert last.prefix.startswith(" Data preprocessing: step one\nstep two\n\nModel architecture:")
    assert last.prefix.endswith("Model training:") and last.max_tokens == 64
    assert "\nModel training:" in last.stop and "[INST]" in last.stop
    for c in candidates:
        assert c.instruction.is_complete and not c.fallback
        assert "copied heading" not in c.text and c.text.count("Model training:") == 1
    assert journal.meta["instruction_stage"]["sampling"] == "guided"


def test_guided_sampling_is_well_formed_even_from_the_random_tiny_model(tmp_path: Path) -> None:
    from src.llm.local import LocalClient
    from src.training.base_models import load_base_model

    model, tok = load_base_model(OmegaConf.load(REPO_ROOT / "conf" / "model" / "tiny_llama.yaml"), None)
    client = LocalClient.from_pretrained(model, tok, name="tiny", device="cpu")
    small = {**SECTIONS, "headings": {k: {**v, "max_tokens": 12} for k, v in SECTIONS["headings"].items()}}
    journal = Journal("toy", "roc_auc", True)
    gen = _generator(k=2, sampling="guided", sections=small, min_chars=0, max_resample=0)
    candidates = gen.generate(client, FACTS, "Predict y from x.", journal)
    assert all(c.instruction.is_complete and not c.fallback for c in candidates)
    free = _generator(k=2, sampling="free", max_tokens=36, min_chars=0, max_resample=0)
    assert not any(
        c.instruction.is_complete for c in free.generate(client, FACTS, "Predict y.", Journal("t", "m", True))
    )


def test_vote_writes_the_family_into_the_architecture_section() -> None:
    client = CountingClient(lambda r: " - as said")
    retriever = FakeRetriever()
    gen = _generator(k=2, sampling="guided", sections=SECTIONS, decide="vote", retriever=retriever)
    journal = Journal("toy", "roc_auc", True)
    candidates = gen.generate(client, FACTS, "Predict y.", journal)
    arch = client.batches[1][0].prefix
    assert arch.endswith("Model architecture: gradient-boosted decision trees (LightGBM) (n_estimators=500)")
    assert "LightGBM" in candidates[0].instruction.architecture
    stage = journal.meta["instruction_stage"]
    assert stage["decide"] == "vote" and stage["voted_family"] == "gbdt"
    assert stage["excluded_competitions"] == ["toy-competition"]


def test_context_examples_precede_the_request_and_candidates_join_the_options() -> None:
    client = CountingClient(lambda r: GOOD)
    gen = _generator(k=2, retrieval="context", retriever=FakeRetriever())
    journal = Journal("toy", "roc_auc", True)
    gen.generate(client, FACTS, "Predict y.", journal)
    prompt = client.batches[0][0].prompt
    assert prompt.index("### Example 1\nData preprocessing:\n- scale") < prompt.index("[INST]")
    assert "### Example" in client.batches[0][0].stop  # a sample that starts another example ends there

    gen = _generator(k=2, retrieval="candidates", retriever=FakeRetriever())
    journal = Journal("toy", "roc_auc", True)
    candidates = gen.generate(CountingClient(lambda r: GOOD), FACTS, "Predict y.", journal)
    assert [(c.rank, c.source) for c in candidates] == [(1, "model"), (2, "model"), (3, "retrieved")]
    node = journal[candidates[2].node_id]
    assert node.meta["source"] == "retrieved" and node.meta["competition"] == "c1"


def test_bad_instruction_stage_settings_are_one_clear_error() -> None:
    with pytest.raises(PipesynthError, match="needs sampling=guided"):
        _generator(decide="vote", retriever=FakeRetriever())
    with pytest.raises(PipesynthError, match="need the corpus index"):
        _generator(retrieval="context")
    with pytest.raises(PipesynthError, match="unknown sampling"):
        _generator(sampling="beam")
    with pytest.raises(PipesynthError, match="core section"):
        _generator(
            sampling="guided", sections={"headings": {"preprocessing": {"text": "Data:", "max_tokens": 5}}}
        )


def test_corpus_retriever_excludes_the_task_itself(corpus_csv: Path, kaggle_dir: Path) -> None:
    from src.pipeline.instruct import build_retriever

    tfidf = {"_target_": "src.corpus.retrieval.TfidfEmbedder"}
    retrieval = {"mode": "candidates", "embedder": tfidf, "n_candidates": 2, "corpus_path": str(corpus_csv)}
    cfg = {"retrieval": retrieval}
    retriever = build_retriever(cfg)
    facts = json.loads((kaggle_dir / "titanic" / "task.json").read_text())
    description = (kaggle_dir / "titanic" / "description.md").read_text()
    guidance = retriever.guidance(facts, description, "tabular data", "accuracy", "candidates", "model")
    excluded = guidance.meta["excluded_competitions"]
    assert excluded and len(guidance.candidates) == 2
    assert not set(excluded) & {c["competition"] for c in guidance.candidates}
    assert all("titanic" not in c["text"].lower() for c in guidance.candidates)


def test_guided_bodies_with_numbered_sub_headings_still_parse_into_the_three_sections() -> None:
    # what Qwen2.5-Coder wrote: numbered "step: detail" items, which the section parser reads as headings
    replies = iter(
        [
            " \n1. Data cleaning: drop duplicates.\n2. **Data Transformation:** scale the features.",
            " \n1. Choose a suitable model: a decision tree classifier.\n2. Select hyperparameters: grid search.",
            " \n1. Split the dataset into training and testing sets: use scikit-learn.\n**Model Evaluation**\n- F1",
        ]
    )
    client = CountingClient(lambda r: next(replies))
    gen = _generator(k=1, sampling="guided", sections=SECTIONS)
    [c] = gen.generate(client, FACTS, "Predict y.", Journal("toy", "roc_auc", True))
    assert c.instruction.is_complete and not c.fallback
    assert "decision tree classifier" in c.instruction.architecture
    assert "grid search" in c.instruction.architecture and "scikit-learn" in c.instruction.training


def test_a_model_that_ends_its_turn_after_a_heading_gets_the_first_bullet_written() -> None:
    # Qwen sometimes ends its answer right after "Model training:" (it covered training under architecture)
    def reply(r: ChatRequest) -> str:
        if r.prefix.endswith("Model training:"):
            return ""
        return " use 5-fold CV" if r.prefix.endswith("\n-") else " - something concrete"

    client = CountingClient(reply)
    [c] = _generator(k=1, sampling="guided", sections=SECTIONS).generate(
        client, FACTS, "Predict y.", Journal("toy", "roc_auc", True)
    )
    assert len(client.batches) == 4 and client.batches[3][0].prefix.endswith("Model training:\n-")
    assert c.instruction.is_complete and c.instruction.training == "- use 5-fold CV"
