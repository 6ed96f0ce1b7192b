"""Seeded train/test splits, sized like scikit-learn's and datasets' ``train_test_split``.

A fraction of ``n`` records gives ``ceil(test_size * n)`` test and ``floor(train_size * n)`` train
records; an int is a count; a missing train size takes the rest. The shuffle is
``numpy.random.default_rng(seed).permutation(n)``, test first, exactly as ``datasets`` does, so the same
records and seed give the same splits as ``Dataset.train_test_split(..., seed=seed)``.
"""

from __future__ import annotations

import math
from typing import Any

from bedrock_ft.errors import DatasetError

__all__ = ["split_counts", "split_indices"]


def _describe(size: float | int) -> str:
    return f"{size} of the records" if isinstance(size, float) else f"{size} records"


def split_counts(n: int, train_size: float | int | None, test_size: float | int) -> tuple[int, int]:
    """``(n_train, n_test)`` for ``n`` records; DatasetError when they don't fit."""
    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size)
    if train_size is None:
        n_train = n - n_test
    elif isinstance(train_size, float):
        n_train = math.floor(train_size * n)
    else:
        n_train = int(train_size)
    if n_test > n:
        raise DatasetError(
            f"test_size={test_size} asks for {n_test} records, but only {n} remain", field="test_size"
        )
    if n_train + n_test > n:
        raise DatasetError(
            f"train_size={train_size} and test_size={test_size} ask for {n_train} + {n_test} = "
            f"{n_train + n_test} records, but only {n} remain after filtering",
            field="train_size",
        )
    if n_train <= 0:
        raise DatasetError(
            f"train_size={train_size if train_size is not None else 'the rest'} leaves 0 training records "
            f"of {n} (test takes {n_test}); use a larger dataset or fraction",
            field="train_size",
        )
    return n_train, n_test


def split_indices(n: int, n_train: int, n_test: int, seed: int) -> tuple[Any, Any]:
    """Row positions of the train and test splits, as numpy int64 arrays (train first)."""
    import numpy as np

    permutation = np.random.default_rng(seed).permutation(n)
    return permutation[n_test : n_test + n_train], permutation[:n_test]
