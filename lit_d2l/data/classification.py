"""A synthetic classification task: Gaussian clusters, one per class (offline stand-in for Fashion-MNIST)."""

from __future__ import annotations

import math
from typing import Any

import torch

from lit_d2l.data.base import InMemoryDataModule, Split, consecutive_splits
from lit_d2l.errors import require


class GaussianClusters(InMemoryDataModule):
    """x = centre[y] + N(0, I), centres ~ N(0, separation²·I), classes balanced; seeded."""

    def __init__(
        self,
        num_inputs: int = 20,
        num_classes: int = 10,
        num_train: int = 2000,
        num_val: int = 500,
        num_test: int = 0,
        separation: float = 1.0,
        batch_size: int = 64,
        **kwargs: Any,  # seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        require(num_inputs > 0 and num_classes > 1, "data.num_inputs must be > 0 and data.num_classes > 1")
        self.require_split_sizes(num_train, num_val, num_test)
        require(math.isfinite(separation), f"data.separation must be a finite number, got {separation}")
        self.num_inputs, self.num_outputs = num_inputs, num_classes
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.separation = separation

    def build_splits(self) -> dict[str, Split]:
        n = self.num_train + self.num_val + self.num_test
        generator = self.data_generator()
        centres = torch.randn(self.num_outputs, self.num_inputs, generator=generator) * self.separation
        y = torch.randperm(n, generator=generator) % self.num_outputs
        X = centres[y] + torch.randn(n, self.num_inputs, generator=generator)
        return consecutive_splits((X, y), self.num_train, self.num_val)
