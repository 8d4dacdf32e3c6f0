"""Tokenisation for fine-tuning: loss on completion tokens only, description-only truncation, batching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

from src.config import REPO_ROOT
from src.errors import PipesynthError
from src.training.data import (
    IGNORE_INDEX,
    CompletionCollator,
    EpochSampler,
    PromptCompletionDataModule,
    completion_ids,
    pack_examples,
    tokenize_dataset,
    tokenize_pair,
)

CACHE = REPO_ROOT / ".cache"
DESCRIPTION = "Predict the sale price of each house from its 79 features. " * 30
INSTRUCTION = (
    "Preprocessing: impute missing values with medians. Model: LightGBM regressor. Training: 5-fold CV."
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from src.training.base_models import GGUFPackageSource

    tok = AutoTokenizer.from_pretrained(str(GGUFPackageSource().materialize(CACHE)))
    tok.padding_side = "right"
    return tok


@pytest.fixture(scope="module")
def template():
    from src.corpus.prompts import build_template

    return build_template("figure4")


def _prompt(description: str) -> str:
    return f"[INST] Data type: tabular data. Problem: {description.strip().rstrip('.')}. [/INST]"


def test_labels_mask_prompt_and_keep_completion(tokenizer) -> None:
    prompt, completion = _prompt("Predict survival on the Titanic."), " " + INSTRUCTION
    ex = tokenize_pair(tokenizer, prompt, completion, "Predict survival on the Titanic.", max_seq_len=512)
    assert ex is not None and ex["description_cut"] == 0
    n_prompt = len(tokenizer(prompt)["input_ids"])
    target = completion_ids(tokenizer, completion)
    assert target[-1] == tokenizer.eos_token_id
    assert ex["input_ids"] == tokenizer(prompt)["input_ids"] + target
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == target
    assert tokenizer.decode(ex["input_ids"][n_prompt:-1]) == completion


def test_long_pair_cuts_the_description_never_the_instruction(tokenizer) -> None:
    prompt, completion = _prompt(DESCRIPTION), " " + INSTRUCTION
    full = len(tokenizer(prompt)["input_ids"]) + len(completion_ids(tokenizer, completion))
    assert full > 200
    ex = tokenize_pair(tokenizer, prompt, completion, DESCRIPTION, max_seq_len=120)
    assert ex is not None
    assert ex["length"] == 120 and ex["description_cut"] == full - 120
    target = completion_ids(tokenizer, completion)
    assert ex["input_ids"][-len(target) :] == target  # the instruction is whole
    assert ex["labels"][-len(target) :] == target
    assert sum(t != IGNORE_INDEX for t in ex["labels"]) == len(target)
    head = tokenizer.decode(ex["input_ids"][: -len(target)])
    assert head.startswith("[INST] Data type: tabular data. Problem: Predict the sale price")
    assert head.endswith("[/INST]")  # the template's tail survives, only the description shrank


def test_long_pair_with_template_rerenders_a_shorter_description(tokenizer, template) -> None:
    row = {"description": DESCRIPTION, "data_type": "tabular data", "metric_category": "rmse", "rank": 1}
    prompt = template.render_prompt(DESCRIPTION, "tabular data", "rmse", 1)
    completion = template.render_completion(INSTRUCTION)
    ex = tokenize_pair(
        tokenizer, prompt, completion, max_seq_len=150, template=template, row={**row, "prompt": prompt}
    )
    assert ex is not None and ex["length"] <= 150 and ex["description_cut"] > 0
    target = completion_ids(tokenizer, completion)
    assert ex["input_ids"][-len(target) :] == target
    text = tokenizer.decode(ex["input_ids"][: -len(target)])
    # exactly the inference prompt for the shortened description (same template, same tokenizer call)
    fitted = template.fit_description(tokenizer, 150 - len(target), DESCRIPTION, "tabular data", "rmse", 1)
    assert text == template.render_prompt(fitted, "tabular data", "rmse", 1)
    assert text.endswith("[/INST]") and "Metric type is: rmse" in text


def test_pairs_whose_instruction_does_not_fit_are_counted_not_cut(tokenizer) -> None:
    long_instruction = " " + INSTRUCTION * 20
    ds = Dataset.from_dict(
        {
            "prompt": [_prompt("Short task."), _prompt("Another task.")],
            "completion": [" " + INSTRUCTION, long_instruction],
            "description": ["Short task.", "Another task."],
        }
    )
    out, stats = tokenize_dataset(ds, tokenizer, max_seq_len=128)
    assert len(out) == 1 and stats.kept == 1 and stats.dropped_too_long == 1 and stats.dropped_examples == [1]
    with pytest.raises(PipesynthError, match="max_seq_len"):
        tokenize_dataset(ds.select([1]), tokenizer, max_seq_len=128)
    with pytest.raises(PipesynthError, match="prompt"):
        tokenize_dataset(ds.remove_columns("prompt"), tokenizer, max_seq_len=128)


def test_collator_pads_labels_with_ignore_index(tokenizer) -> None:
    feats = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
        {"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9]},
    ]
    batch = CompletionCollator(pad_token_id=2)(feats)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 2, 2], [5, 6, 7, 8, 9]]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["num_tokens"] == 8 and batch["num_label_tokens"] == 2 + 3


def test_group_by_length_batches_similar_lengths_and_resume_skips_batches() -> None:
    lengths = [int(x) for x in torch.randint(20, 1000, (400,), generator=torch.Generator().manual_seed(0))]

    def spread(order: list[int]) -> float:  # mean (longest - shortest) per batch of 4: the padding wasted
        batches = [order[i : i + 4] for i in range(0, len(order), 4)]
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    sampler = EpochSampler(lengths, batch_size=4, seed=0, group_by_length=True)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    shuffled = list(EpochSampler(lengths, batch_size=4, seed=0, group_by_length=False))
    assert spread(order) < 0.2 * spread(shuffled)
    assert list(sampler) == order  # deterministic per epoch
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    sampler.skip_batches = 3
    assert list(sampler) == order[12:]  # a resumed epoch starts after the batches already trained on
    assert list(sampler) == order  # ... once


def test_packing_keeps_examples_apart(tokenizer) -> None:
    examples = [
        tokenize_pair(tokenizer, _prompt(f"Task {i}."), f" Use model {i}.", f"Task {i}.", 64)
        for i in range(6)
    ]
    ds = Dataset.from_dict({k: [e[k] for e in examples] for k in ("input_ids", "labels", "length")})
    packed = pack_examples(ds, max_seq_len=64)
    assert len(packed) < len(ds)
    assert sum(packed["length"]) == sum(ds["length"]) and max(packed["length"]) <= 64
    row = packed[0]
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
    assert len(starts) >= 2  # positions restart at every packed example
    batch = CompletionCollator(tokenizer.pad_token_id)([packed[i] for i in range(len(packed))])
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    # the loss never spans two examples: each example's first token is a masked prompt token
    for s in starts:
        assert row["labels"][s] == IGNORE_INDEX


def test_packed_rows_attend_within_each_example_only(tokenizer) -> None:
    """transformers builds a block-diagonal mask from restarting position ids (without a KV cache, as in
    training): logits of the second packed example equal those of the same example alone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    ).eval()
    a = tokenizer("first example text")["input_ids"]
    b = tokenizer("second example, longer text here")["input_ids"]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        positions = torch.tensor([list(range(len(a))) + list(range(len(b)))])
        packed = model(input_ids=torch.tensor([a + b]), position_ids=positions, use_cache=False).logits[
            0, len(a) :
        ]
        unmasked = model(input_ids=torch.tensor([a + b]), use_cache=False).logits[0, len(a) :]
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-4)
    assert (unmasked - alone).abs().max() > 1e-2  # without restarting positions the examples would mix


def test_datamodule_batches(tokenizer, tmp_path: Path) -> None:
    n = 10
    ds = Dataset.from_dict(
        {
            "prompt": [_prompt(f"Task number {i} " * (i + 1)) for i in range(n)],
            "completion": [f" Instruction {i}." for i in range(n)],
            "description": [f"Task number {i} " * (i + 1) for i in range(n)],
        }
    )
    dm = PromptCompletionDataModule(
        DatasetDict(train=ds, validation=ds.select(range(3))), tokenizer, 64, 4, 2
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and sum(b["input_ids"].shape[0] for b in batches) == n
    assert all(b["input_ids"].shape == b["labels"].shape for b in batches)
    val = list(dm.val_dataloader())
    assert [b["input_ids"].shape[0] for b in val] == [2, 1]
