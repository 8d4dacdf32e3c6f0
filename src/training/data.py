"""Prompt/completion pairs -> token ids with the loss on the completion only; the LightningDataModule.

- The prompt and the completion are tokenised separately and concatenated, so the prompt's token ids are
  exactly those the model sees at inference time (same template, same tokenizer call).
- Labels are -100 on every prompt token (and padding): the loss is on the instruction only.
- `max_seq_len` is explicit. When a pair is too long, tokens are cut from the END OF THE DESCRIPTION inside
  the prompt (located by character offsets, so any template works); the instruction is never cut. A pair whose
  instruction alone does not fit is dropped, counted and logged.
- Batches group examples of similar length (transformers' length-grouped order; the paper's
  `group_by_length=True`); `packing=true` packs several examples into one row with per-example position ids,
  which transformers turns into a block-diagonal attention mask (no attention across examples).
- The training sampler is deterministic per (seed, epoch) and skips the batches already trained on when a run
  resumes from a checkpoint mid-epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader, Sampler

from src.errors import PipesynthError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class TokenizeStats:
    """What tokenisation did to a split: nothing is dropped or cut silently."""

    examples: int = 0
    kept: int = 0
    descriptions_truncated: int = 0
    description_tokens_cut: int = 0
    dropped_too_long: int = 0
    dropped_examples: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["dropped_examples"] = data["dropped_examples"][:20]
        return data


def _description_token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """[first, last+1) of the tokens lying wholly inside characters [start, end) of the prompt."""
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s >= start and e <= end]
    if not inside:
        return 0, 0
    return inside[0], inside[-1] + 1


def fit_prompt(
    tokenizer: Any,
    prompt: str,
    description: str | None,
    max_prompt_tokens: int,
    add_special_tokens: bool = True,
) -> tuple[list[int], int] | None:
    """Token ids of `prompt` with at most `max_prompt_tokens`, cutting only the end of `description`.

    Works for any template: the description is located in the prompt by character offsets and its last
    tokens are removed. Returns (ids, tokens cut), or None when the prompt cannot fit even without the whole
    description (or the description is not in the prompt).
    """
    enc = tokenizer(prompt, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    excess = len(ids) - max_prompt_tokens
    if excess <= 0:
        return ids, 0
    # templates may strip the description's whitespace and final period before inserting it
    needle = (description or "").strip().rstrip(".").rstrip()
    start = prompt.find(needle) if needle else -1
    if start < 0:
        return None
    first, stop = _description_token_span(enc["offset_mapping"], start, start + len(needle))
    if stop - first < excess:
        return None
    # keep the head of the description (the task statement comes first in competition descriptions)
    return ids[: stop - excess] + ids[stop:], excess


def fit_prompt_with_template(
    tokenizer: Any, template: Any, row: dict[str, Any], max_prompt_tokens: int
) -> tuple[list[int], int] | None:
    """Like `fit_prompt`, through the template's own `fit_description` (a word-boundary prefix of the
    description, re-rendered): exactly what the inference side does with the same budget."""
    args = (row["description"], row["data_type"], row["metric_category"], row["rank"])
    full = tokenizer(row["prompt"], add_special_tokens=template.add_special_tokens)["input_ids"]
    if len(full) <= max_prompt_tokens:
        return list(full), 0
    try:
        description = template.fit_description(tokenizer, max_prompt_tokens, *args)
    except PipesynthError:
        return None  # the template does not fit even without a description
    prompt = template.render_prompt(description, *args[1:])
    ids = tokenizer(prompt, add_special_tokens=template.add_special_tokens)["input_ids"]
    return list(ids), len(full) - len(ids)


def completion_ids(tokenizer: Any, completion: str, add_eos: bool = True) -> list[int]:
    """The completion's token ids (no BOS), ending with the tokenizer's EOS when `add_eos`."""
    ids: list[int] = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None and ids[-1:] != [tokenizer.eos_token_id]:
        ids.append(tokenizer.eos_token_id)
    return ids


def tokenize_pair(
    tokenizer: Any,
    prompt: str,
    completion: str,
    description: str | None = None,
    max_seq_len: int | None = None,
    add_eos: bool = True,
    add_special_tokens: bool = True,
    template: Any = None,
    row: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """One training example: input_ids, labels (-100 on the prompt), and how many description tokens were cut.

    With a `template` and the corpus `row` (description, data_type, metric_category, rank), a long prompt is
    re-rendered with a shortened description; otherwise its description tokens are cut in place. Returns None
    when the completion alone leaves no room.
    """
    target = completion_ids(tokenizer, completion, add_eos)
    budget = (max_seq_len - len(target)) if max_seq_len else 1 << 62
    if budget <= 0:
        return None
    if template is not None and row is not None:
        fitted = fit_prompt_with_template(tokenizer, template, row, budget)
    else:
        fitted = fit_prompt(tokenizer, prompt, description, budget, add_special_tokens)
    if fitted is None:
        return None
    prompt_ids, cut = fitted
    input_ids = prompt_ids + target
    labels = [IGNORE_INDEX] * len(prompt_ids) + target
    return {"input_ids": input_ids, "labels": labels, "length": len(input_ids), "description_cut": cut}


_TEMPLATE_FIELDS = ("description", "data_type", "metric_category", "rank")


def tokenize_dataset(
    dataset: Dataset,
    tokenizer: Any,
    max_seq_len: int | None,
    add_eos: bool = True,
    split: str = "train",
    template: Any = None,
) -> tuple[Dataset, TokenizeStats]:
    """Tokenise a split with `prompt`/`completion` columns (and `description`, used for truncation).

    `template` (a src.corpus.prompts.PromptTemplate) decides BOS/EOS handling and shortens long descriptions
    the way inference does; without one, the prompt gets the tokenizer's special tokens and EOS is `add_eos`.
    """
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise PipesynthError(
            f"the {split} split has no column(s) {sorted(missing)} (columns: {dataset.column_names})",
            "build the corpus with src.corpus.build.build_corpus, which renders prompt/completion pairs",
        )
    has_description = "description" in dataset.column_names
    use_template = template is not None and all(c in dataset.column_names for c in _TEMPLATE_FIELDS)
    if template is not None:
        add_eos = bool(template.append_eos)
    add_special = bool(getattr(template, "add_special_tokens", True))
    stats = TokenizeStats(examples=len(dataset))
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": []}
    for i, row in enumerate(dataset):
        example = tokenize_pair(
            tokenizer,
            row["prompt"],
            row["completion"],
            row["description"] if has_description else None,
            max_seq_len,
            add_eos,
            add_special,
            template if use_template else None,
            row if use_template else None,
        )
        if example is None:
            stats.dropped_too_long += 1
            stats.dropped_examples.append(i)
            continue
        stats.kept += 1
        if example["description_cut"]:
            stats.descriptions_truncated += 1
            stats.description_tokens_cut += example["description_cut"]
        for key in rows:
            rows[key].append(example[key])
    if stats.dropped_too_long:
        log.warning(
            "%s: dropped %d of %d pairs whose instruction alone exceeds max_seq_len=%s (rows %s...)",
            split,
            stats.dropped_too_long,
            stats.examples,
            max_seq_len,
            stats.dropped_examples[:10],
        )
    if stats.descriptions_truncated:
        log.info(
            "%s: cut %d description tokens in %d of %d pairs to fit max_seq_len=%s",
            split,
            stats.description_tokens_cut,
            stats.descriptions_truncated,
            stats.examples,
            max_seq_len,
        )
    if not stats.kept:
        raise PipesynthError(
            f"no {split} example fits max_seq_len={max_seq_len} ({stats.examples} examples)",
            "raise max_seq_len (the instruction is never truncated)",
        )
    return Dataset.from_dict(rows), stats


def pack_examples(dataset: Dataset, max_seq_len: int) -> Dataset:
    """Best-fit-decreasing packing into rows of <= max_seq_len tokens, with per-example position ids."""
    order = sorted(range(len(dataset)), key=lambda i: -dataset[i]["length"])
    bins: list[list[int]] = []
    space: list[int] = []
    for i in order:
        length = dataset[i]["length"]
        best = min((b for b in range(len(bins)) if space[b] >= length), key=lambda b: space[b], default=None)
        if best is None:
            bins.append([i])
            space.append(max_seq_len - length)
        else:
            bins[best].append(i)
            space[best] -= length
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": [], "position_ids": [], "length": []}
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            ids += dataset[i]["input_ids"]
            labels += dataset[i]["labels"]
            positions += list(range(dataset[i]["length"]))
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(positions)
        rows["length"].append(len(ids))
    return Dataset.from_dict(rows)


class CompletionCollator:
    """Right-pads a batch; labels are -100 on padding. Packed rows get position ids and no attention mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        packed = "position_ids" in features[0]
        attention = torch.zeros((n, width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for row, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[row, :k] = torch.tensor(f["input_ids"])
            labels[row, :k] = torch.tensor(f["labels"])
            attention[row, :k] = 1
            if packed:
                positions[row, :k] = torch.tensor(f["position_ids"])
                # padding is its own "sequence" (positions restart), so real tokens never attend to it
                positions[row, k:] = torch.arange(width - k)
        batch: dict[str, Any] = {"input_ids": input_ids, "labels": labels}
        if packed:
            batch["position_ids"] = positions
        else:
            batch["attention_mask"] = attention
        # where the loss is: flat positions into the (n, width - 1) grid of next-token predictions, computed
        # here on the host so that selecting them on the device needs no synchronisation
        shifted = labels[:, 1:]
        batch["label_index"] = (shifted.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)
        batch["label_targets"] = shifted.reshape(-1)[batch["label_index"]]
        # plain ints, so throughput logging never waits on the device
        batch["num_tokens"] = int(sum(len(f["input_ids"]) for f in features))
        batch["num_label_tokens"] = int(batch["label_index"].numel())
        return batch


class EpochSampler(Sampler[int]):
    """Training order, deterministic per (seed, epoch): length-grouped (or shuffled) indices.

    `skip_batches` drops the first batches of the next epoch iterated: those a resumed run already trained on.
    Lightning calls `set_epoch` before each epoch (also under DDP, where it wraps this sampler).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, epoch: int) -> list[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.group_by_length:
            return list(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        return torch.randperm(len(self.lengths), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.indices(self.epoch)
        skip, self.skip_batches = self.skip_batches * self.batch_size, 0
        return iter(order[skip:])

    def __len__(self) -> int:
        return len(self.lengths)


class PromptCompletionDataModule(pl.LightningDataModule):
    """Tokenised train/validation splits, length-grouped batches, optional packing, resumable order."""

    def __init__(
        self,
        datasets: DatasetDict,
        tokenizer: Any,
        max_seq_len: int | None = 1024,
        batch_size: int = 4,
        eval_batch_size: int = 4,
        group_by_length: bool = True,
        packing: bool = False,
        add_eos: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
        template: Any = None,
    ) -> None:
        super().__init__()
        if packing and not max_seq_len:
            raise PipesynthError(
                "packing=true needs a max_seq_len", "set max_seq_len=1024 (or packing=false)"
            )
        self.raw = datasets
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.group_by_length = group_by_length
        self.packing = packing
        self.add_eos = add_eos
        self.num_workers = num_workers
        self.seed = seed
        self.template = template
        self.collator = CompletionCollator(tokenizer.pad_token_id, pad_to_multiple_of)
        self.splits: dict[str, Dataset] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.train_sampler: EpochSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for split in ("train", "validation"):
            if split not in self.raw:
                continue
            tokenized, stats = tokenize_dataset(
                self.raw[split], self.tokenizer, self.max_seq_len, self.add_eos, split, self.template
            )
            self.stats[split] = stats.as_dict()
            if self.packing and split == "train":
                tokenized = pack_examples(tokenized, int(self.max_seq_len or 0))
                self.stats[split]["packed_rows"] = len(tokenized)
            self.splits[split] = tokenized

    def num_train_batches(self) -> int:
        self.setup()
        return math.ceil(len(self.splits["train"]) / self.batch_size)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        data = self.splits["train"]
        self.train_sampler = EpochSampler(data["length"], self.batch_size, self.seed, self.group_by_length)
        trainer = self.trainer
        if trainer is not None:
            # resuming mid-epoch: the restored loop says how many batches of this epoch were already trained on
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if done and trainer.fit_loop.restarting:
                self.train_sampler.skip_batches = int(done) * max(1, trainer.world_size)
                log.info("resuming epoch %d after %d batches", trainer.current_epoch, done)
        return DataLoader(
            data.with_format(columns=[c for c in data.column_names if c != "length"]),
            batch_size=self.batch_size,
            sampler=self.train_sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup()
        if "validation" not in self.splits:
            return []  # type: ignore[return-value]
        data = self.splits["validation"]
        return DataLoader(
            data.with_format(columns=[c for c in data.column_names if c != "length"]),
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.collator,
            num_workers=self.num_workers,
        )
