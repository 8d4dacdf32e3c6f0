"""Train/validation split BY COMPETITION (no competition on both sides), seeded, plus seeded subsetting."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict
from sklearn.model_selection import GroupShuffleSplit

from src.errors import PipesynthError


def split_by_competition(ds: Dataset, validation_fraction: float, seed: int) -> DatasetDict:
    """Hold out round-up(fraction x #competitions) whole competitions for validation; same seed, same split.

    The split depends on the set of competitions and the seed only, not on the row order.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise PipesynthError(
            f"data.split.validation_fraction={validation_fraction} is outside [0, 1)",
            "use e.g. 0.1 (a tenth of the competitions go to validation), or 0 for none",
        )
    groups = np.asarray(list(ds["competition"]), dtype=object)
    n_groups = len(set(groups.tolist()))
    if validation_fraction == 0.0 or len(ds) == 0:
        return DatasetDict(train=ds, validation=ds.select([]))
    if n_groups < 2:
        raise PipesynthError(
            f"the corpus has {n_groups} competition(s) after filtering; a split by competition needs at least 2",
            "relax data.filters (data_types, exclude_metric_categories) or set data.split.validation_fraction=0",
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return DatasetDict(train=ds.select(sorted(train_idx)), validation=ds.select(sorted(val_idx)))


def subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of n rows in their original order (all rows when n is None or >= len)."""
    if n is None or n >= len(ds):
        return ds
    if n < 0:
        raise PipesynthError(f"data.limit asks for {n} examples", "use a positive number, or null for all")
    picked = np.random.default_rng(seed).choice(len(ds), size=n, replace=False)
    return ds.select(sorted(int(i) for i in picked))
