"""Prompt templates: Figure 4 wording, one code path for training and inference, description budget, chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from src.corpus.linguacodus import load_linguacodus
from src.corpus.prompts import ChatPromptTemplate, PromptTemplate, build_template, to_corpus_data_type
from src.errors import PipesynthError

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ROW = {
    "description": "Predict which passengers survived the Titanic shipwreck. \n",
    "data_type": "tabular data",
    "metric_category": "categorization_accuracy",
    "rank": 3,
    "instruction": "\nData preprocessing:\n- fill ages\n\nModel architecture:\n- LightGBM\n\nModel training:\n- 5-fold CV\n",
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A word-level tokenizer with a BOS post-processor and a ChatML chat template; built offline in ms."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    words = ["[INST]", "[/INST]", "Get", "the", "main", "information", "Problem", "Predict", "survived"]
    tok.train_from_iterator(
        [" ".join(words)], trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>", "</s>"])
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="[UNK]")
    fast.chat_template = CHATML
    return fast


def test_figure4_wording_split_at_inst() -> None:
    pair = build_template("figure4").render_pair(ROW)
    assert pair["prompt"] == (
        "[INST] Get the main information about data preprocessing, model architecture and model training for this "
        "problem. This solution has the 3 place in rating. Data type: tabular data. Metric type is: "
        "categorization_accuracy. Problem: Predict which passengers survived the Titanic shipwreck. [/INST]"
    )
    assert (
        pair["completion"]
        == " Data preprocessing:\n- fill ages\n\nModel architecture:\n- LightGBM\n\nModel training:\n- 5-fold CV"
    )
    template = build_template("figure4")
    assert template.add_special_tokens and template.append_eos  # BOS from the tokenizer, EOS id appended


@pytest.mark.parametrize("name", ["figure4", "linguacodus_release", "chat"])
def test_inference_prompt_is_a_byte_prefix_of_the_training_text(
    name: str, corpus_csv: Path, tokenizer: Any
) -> None:
    ds, _ = load_linguacodus(corpus_csv)
    train_template = build_template(name, tokenizer=tokenizer)
    infer_template = build_template(name, tokenizer=tokenizer)  # built afresh, as generation will
    for row in ds.select(range(0, len(ds), 97)):
        pair = train_template.render_pair(row)
        training_text = (pair["prompt"] + pair["completion"]).encode("utf-8")
        prompt = infer_template.render_prompt(
            row["description"], row["data_type"], row["metric_category"], row["rank"]
        )
        assert training_text.startswith(prompt.encode("utf-8"))
        assert len(training_text) > len(prompt.encode("utf-8"))


def test_fit_description_truncates_only_the_description(tokenizer: Any) -> None:
    template = build_template("figure4")
    long = " ".join(["Predict survived the main information."] * 60)
    args = ("tabular data", "auc", 1)
    full = template.count_tokens(tokenizer, template.render_prompt(long, *args))
    empty = template.count_tokens(tokenizer, template.render_prompt("", *args))
    budget = (full + empty) // 2
    fitted = template.fit_description(tokenizer, budget, long, *args)
    assert long.startswith(fitted) and 0 < len(fitted) < len(long) and not fitted.endswith(" ")
    assert template.count_tokens(tokenizer, template.render_prompt(fitted, *args)) <= budget
    # one more word would not fit: the longest prefix is taken
    next_word = long[: long.index(" ", len(fitted) + 1)]
    assert template.count_tokens(tokenizer, template.render_prompt(next_word, *args)) > budget
    assert template.fit_description(tokenizer, full, long, *args) == long
    with pytest.raises(PipesynthError, match="without any description") as err:
        template.fit_description(tokenizer, empty - 1, long, *args)
    assert "fix:" in str(err.value)


def test_chat_template_pair_equals_the_full_conversation(tokenizer: Any) -> None:
    template = build_template("chat", tokenizer=tokenizer)
    assert isinstance(template, ChatPromptTemplate)
    assert not template.add_special_tokens and not template.append_eos
    pair = template.render_pair(ROW)
    assert pair["prompt"].startswith("<|im_start|>user\nGet the main information") and pair[
        "prompt"
    ].endswith("<|im_start|>assistant\n")
    user = pair["prompt"][len("<|im_start|>user\n") : -len("<|im_end|>\n<|im_start|>assistant\n")]
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": ROW["instruction"].strip()}],
        tokenize=False,
    )
    assert pair["prompt"] + pair["completion"] == full
    assert pair["completion"].endswith("<|im_end|>\n")


def test_chat_template_needs_a_tokenizer_with_a_chat_template(tokenizer: Any) -> None:
    with pytest.raises(PipesynthError, match="has none") as err:
        build_template("chat").render_prompt("d", "text data", "auc", 1)
    assert "tokenizer=" in str(err.value)
    plain = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]")
    with pytest.raises(PipesynthError, match="no chat template"):
        build_template("chat", tokenizer=plain).render_prompt("d", "text data", "auc", 1)


def test_bad_template_definitions_fail_at_build_time() -> None:
    with pytest.raises(PipesynthError, match=r"unknown placeholder\(s\) \['metric_type'\]"):
        PromptTemplate(prompt="Metric: {metric_type} [/INST]")
    with pytest.raises(PipesynthError, match="rank_format"):
        PromptTemplate(prompt="{rank}", rank_format="roman")  # type: ignore[arg-type]
    with pytest.raises(PipesynthError, match="prompt template 'figure5' not found"):
        build_template("figure5")
    bad = {"_target_": "src.corpus.prompts.PromptTemplate", "prompt": "Problem: {desc} [/INST]"}
    with pytest.raises(PipesynthError, match=r"unknown placeholder\(s\) \['desc'\]"):
        build_template(OmegaConf.create(bad))


def test_rank_formats() -> None:
    for fmt, expected in [
        ("number", "28"),
        ("ordinal", "28th"),
        ("words", "twenty-eighth"),
        ("release", "28.0th"),
    ]:
        assert PromptTemplate(prompt="{rank}", rank_format=fmt).render_prompt("", "", "", 28) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task_type", "corpus"),
    [
        ("tabular", "tabular data"),
        ("text", "text data"),
        ("image", "image data"),
        ("time_series", "time series"),
        ("audio", "audio"),
        ("tabular+time_series", "tabular data_time series"),
    ],
)
def test_task_data_types_map_to_the_corpus_spelling(task_type: str, corpus: str) -> None:
    assert to_corpus_data_type(task_type) == corpus


def test_every_corpus_data_type_spelling_is_a_fixed_point(corpus_csv: Path) -> None:
    ds, _ = load_linguacodus(corpus_csv)
    for spelling in set(ds["data_type"]):
        assert to_corpus_data_type(spelling) == spelling
