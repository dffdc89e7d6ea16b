"""Synthetic regression data with known parameters (D2L 3.3)."""

from __future__ import annotations

import torch

from lit_d2l.data.base import InMemoryDataModule, Loader, Split
from lit_d2l.errors import require


class SyntheticRegressionData(InMemoryDataModule):
    """y = Xw + b + ε with X ~ N(0, I) and ε ~ N(0, noise²); the same seed gives the same data (D2L 3.3)."""

    def __init__(
        self,
        w: list[float] = [2.0, -3.4],  # noqa: B006 - jsonargparse shows defaults from the signature
        b: float = 4.2,
        noise: float = 0.01,
        num_train: int = 1000,
        num_val: int = 1000,
        num_test: int = 0,
        batch_size: int = 32,
        seed: int = 0,
        num_folds: int = 1,
        fold: int = 0,
        loader: Loader = "tensor",
    ) -> None:
        super().__init__(batch_size, seed, num_folds=num_folds, fold=fold, loader=loader)
        require(len(w) > 0, "data.w must have at least one weight, e.g. --data.w '[2, -3.4]'")
        require(num_train > 0, f"data.num_train must be > 0, got {num_train}")
        require(num_val >= 0 and num_test >= 0, "data.num_val and data.num_test must be >= 0")
        require(noise >= 0, f"data.noise must be >= 0, got {noise}")
        self.save_hyperparameters()
        self.w = torch.tensor(w, dtype=torch.float32)
        self.b = float(b)
        self.noise = noise
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test

    @property
    def num_inputs(self) -> int:
        return len(self.w)

    def true_params(self) -> tuple[torch.Tensor, float]:
        """The weights and bias the data was generated with."""
        return self.w, self.b

    def build_splits(self) -> dict[str, Split]:
        n = self.num_train + self.num_val + self.num_test
        generator = torch.Generator().manual_seed(self.seed)
        X = torch.randn(n, len(self.w), generator=generator)
        y = X @ self.w + self.b + self.noise * torch.randn(n, generator=generator)
        y = y.reshape(-1, 1)
        bounds = {"train": (0, self.num_train), "val": (self.num_train, self.num_train + self.num_val)}
        bounds["test"] = (self.num_train + self.num_val, n)
        return {name: (X[lo:hi], y[lo:hi]) for name, (lo, hi) in bounds.items()}
