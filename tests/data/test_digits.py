"""The UCI handwritten digits (scikit-learn's copy, offline): stratified splits, a fixed test set."""

from __future__ import annotations

import pytest
import torch

from lit_d2l.data import Digits
from lit_d2l.errors import ConfigError, UserError


def test_stratified_splits_a_fixed_test_set_and_a_small_training_set() -> None:
    data = Digits(seed=0)
    sizes = {name: len(split[1]) for name, split in data.splits.items()}
    assert sizes == {"train": 1077, "val": 360, "test": 360}
    for split in data.splits.values():
        assert split[1].bincount(minlength=10).min() >= 0.09 * len(split[1]), "every digit keeps its share"
    small = Digits(seed=1, num_train=100)
    assert small.splits["train"][1].bincount().tolist() == [10] * 10
    assert torch.equal(small.splits["test"][0], data.splits["test"][0]), "one test set for every seed"
    assert not torch.equal(small.splits["val"][0], data.splits["val"][0]), "validation follows data.seed"
    assert torch.equal(Digits(seed=1, num_train=100).splits["train"][0], small.splits["train"][0])
    X, _ = data.transform_batch(tuple(t[:4] for t in data.splits["train"]))
    assert X.shape == (4, 1, 8, 8) and X.dtype == torch.float32 and X.min() >= 0 and X.max() <= 1
    assert (data.num_inputs, data.num_outputs) == (64, 10)


def test_bad_sizes_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"data\.val_size must be a count > 0"):
        Digits(val_size=0)
    with pytest.raises(ConfigError, match=r"data\.num_train must be > 0"):
        Digits(num_train=0)
    with pytest.raises(UserError, match=r"data\.num_train must be at most the 1077 images"):
        _ = Digits(num_train=5000).splits
