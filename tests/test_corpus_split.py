"""Train/validation split by competition on the real corpus: disjoint, seeded, independent of row order."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from src.corpus.linguacodus import load_linguacodus
from src.corpus.split import split_by_competition, subsample
from src.errors import PipesynthError


@pytest.fixture(scope="module")
def corpus(corpus_csv: Path) -> Dataset:
    return load_linguacodus(corpus_csv)[0]


def test_no_competition_on_both_sides(corpus: Dataset) -> None:
    dd = split_by_competition(corpus, 0.1, seed=0)
    train, val = set(dd["train"]["competition"]), set(dd["validation"]["competition"])
    assert not train & val
    assert len(val) == 10 and len(train) + len(val) == 91  # ceil(0.1 x 91) competitions held out
    assert len(dd["train"]) + len(dd["validation"]) == len(corpus)


def test_same_seed_same_split_other_seed_other_split(corpus: Dataset) -> None:
    a = split_by_competition(corpus, 0.2, seed=3)["validation"]["kernel_id"]
    b = split_by_competition(corpus, 0.2, seed=3)["validation"]["kernel_id"]
    c = split_by_competition(corpus, 0.2, seed=4)["validation"]["kernel_id"]
    assert a == b and set(a) != set(c)


def test_split_does_not_depend_on_row_order(corpus: Dataset) -> None:
    shuffled = corpus.shuffle(seed=123)
    a = set(split_by_competition(corpus, 0.2, seed=1)["validation"]["competition"])
    b = set(split_by_competition(shuffled, 0.2, seed=1)["validation"]["competition"])
    assert a == b


def test_zero_fraction_and_too_few_competitions(corpus: Dataset) -> None:
    dd = split_by_competition(corpus, 0.0, seed=0)
    assert len(dd["validation"]) == 0 and dd["validation"].column_names == corpus.column_names
    one = corpus.select(range(3))
    assert len(set(one["competition"])) == 1
    with pytest.raises(PipesynthError, match="at least 2"):
        split_by_competition(one, 0.1, seed=0)
    with pytest.raises(PipesynthError, match="outside"):
        split_by_competition(corpus, 1.0, seed=0)


def test_subsample_is_seeded_and_keeps_order(corpus: Dataset) -> None:
    a = subsample(corpus, 50, seed=0)["kernel_id"]
    assert a == subsample(corpus, 50, seed=0)["kernel_id"] and len(a) == 50
    ids = list(corpus["kernel_id"])
    positions = [ids.index(k) for k in a]
    assert positions == sorted(positions)
    assert len(subsample(corpus, None, seed=0)) == len(corpus) == len(subsample(corpus, 10**6, seed=0))
