"""Synthetic regression data with known parameters (D2L 3.3)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from lit_d2l.data.base import InMemoryDataModule, Split, consecutive_splits
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
        **kwargs: Any,  # batch_size (32), seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        super().__init__(**kwargs)
        require(len(w) > 0, "data.w must have at least one weight, e.g. --data.w '[2, -3.4]'")
        require(all(map(math.isfinite, w)), f"data.w must be finite numbers, got {w}")
        require(math.isfinite(b), f"data.b must be a finite number, got {b}")
        self.require_split_sizes(num_train, num_val, num_test)
        require_noise(noise)
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
        generator = self.data_generator()
        X = torch.randn(n, len(self.w), generator=generator)
        y = X @ self.w + self.b + self.noise * torch.randn(n, generator=generator)
        return consecutive_splits((X, y.reshape(-1, 1)), self.num_train, self.num_val)


class HighDimLinearData(SyntheticRegressionData):
    """y = 0.05 + Σ 0.01·xᵢ + ε over d = 200 inputs, with only 20 training examples (D2L 3.7)."""

    def __init__(
        self,
        num_inputs: int = 200,
        num_train: int = 20,
        num_val: int = 100,
        num_test: int = 0,
        batch_size: int = 5,
        noise: float = 0.01,
        **kwargs: Any,  # seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        require(num_inputs > 0, f"data.num_inputs must be > 0, got {num_inputs}")
        super().__init__(
            w=[0.01] * num_inputs,
            b=0.05,
            noise=noise,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            batch_size=batch_size,
            **kwargs,
        )


class PolynomialData(InMemoryDataModule):
    """y = Σ wᵢ·φᵢ(x) + b + ε over powers of x ~ N(0, 1), noise ε ~ N(0, noise²) (D2L 1st ed. 3.11 / 4.4).

    ``max_degree`` features are generated, powers ``first_power``, ``first_power + 1``, ...: xⁱ/i!
    (``features="factorial"``, the 2nd edition's scaling) or xⁱ (``"raw"``, the 1st edition's).
    ``true_w`` weights the first of them (the rest weigh 0) and ``true_b`` is added. The model sees
    the first ``degree`` features: as many as the truth uses fit it, fewer underfit, many more can
    overfit. The defaults are the 2nd edition's (x⁰ ... x¹⁹ over i!, w[:4] = [5, 1.2, −3.4, 5.6],
    no bias: x⁰ = 1 plays it); the 1st edition's is ``features="raw"``, ``first_power=1``,
    ``true_w=[1.2, -3.4, 5.6]``, ``true_b=5`` with the model's own bias.
    """

    def __init__(
        self,
        degree: int = 4,
        max_degree: int = 20,
        num_train: int = 100,
        num_val: int = 100,
        num_test: int = 0,
        noise: float = 0.1,
        features: Literal["factorial", "raw"] = "factorial",
        true_w: list[float] = [5.0, 1.2, -3.4, 5.6],  # noqa: B006 - jsonargparse shows defaults from the signature
        true_b: float = 0.0,
        first_power: int = 0,
        batch_size: int = 10,
        **kwargs: Any,  # seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        # D2L uses batch min(10, n): a batch larger than the training set is the whole set.
        super().__init__(batch_size=max(1, min(batch_size, num_train)), **kwargs)
        require(1 <= degree <= max_degree, f"data.degree must be in [1, max_degree={max_degree}], got {degree}")
        self.require_split_sizes(num_train, num_val, num_test)
        require_noise(noise)
        require(all(map(math.isfinite, true_w)), f"data.true_w must be finite numbers, got {true_w}")
        require(math.isfinite(true_b), f"data.true_b must be a finite number, got {true_b}")
        require(
            features in ("factorial", "raw"),
            f"data.features must be 'factorial' (xⁱ/i!) or 'raw' (xⁱ), got {features!r}",
        )
        require(first_power >= 0, f"data.first_power must be >= 0 (0 starts at x⁰ = 1), got {first_power}")
        require(
            len(true_w) <= max_degree,
            f"data.true_w has {len(true_w)} weights but only data.max_degree={max_degree} features are generated: "
            f"give at most {max_degree} weights or raise data.max_degree",
        )
        require(
            first_power > 0 or true_b == 0,
            f"data.true_b must be 0 when data.first_power is 0 (x⁰ = 1 plays the bias): "
            f"put {true_b} into data.true_w[0] or set data.first_power 1",
        )
        self.degree, self.max_degree = degree, max_degree
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.noise = noise
        self.features, self.first_power = features, first_power
        self.w = torch.zeros(max_degree)
        self.w[: len(true_w)] = torch.tensor(true_w, dtype=torch.float32)
        self.b = float(true_b)

    @property
    def num_inputs(self) -> int:
        return self.degree

    def true_params(self) -> tuple[torch.Tensor, float]:
        """The generating weights of the features the model sees, and the bias (0 when x⁰ plays it)."""
        return self.w[: self.degree], self.b

    def build_splits(self) -> dict[str, Split]:
        n = self.num_train + self.num_val + self.num_test
        generator = self.data_generator()
        x = torch.randn(n, 1, generator=generator, dtype=torch.float64)
        powers = torch.arange(self.first_power, self.first_power + self.max_degree, dtype=torch.float64)
        features = x.pow(powers)
        if self.features == "factorial":
            features = features / torch.exp(torch.lgamma(powers + 1))  # xⁱ / i!
        noise = self.noise * torch.randn(n, generator=generator, dtype=torch.float64)
        y = features @ self.w.double() + self.b + noise
        X, y = features[:, : self.degree].float(), y.float().reshape(-1, 1)
        return consecutive_splits((X, y), self.num_train, self.num_val)


def require_noise(noise: float) -> None:
    """The noise's standard deviation σ: finite and >= 0."""
    require(math.isfinite(noise) and noise >= 0, f"data.noise must be a finite number >= 0, got {noise}")
