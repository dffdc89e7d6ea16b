"""Softmax regression: concise (D2L 4.5) and from scratch with a numerically stable softmax (D2L 4.4)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_d2l.models.base import Classifier
from lit_d2l.models.sgd import MinibatchSGD


class SoftmaxRegression(Classifier):
    """Flatten + ``nn.Linear``, cross-entropy on the logits (D2L 4.5)."""

    def __init__(self, sigma: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma = sigma

    def build(self) -> None:
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(self.num_inputs, self.num_outputs))
        nn.init.normal_(self.net[1].weight, 0.0, self.sigma)
        nn.init.zeros_(self.net[1].bias)

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X)


class SoftmaxRegressionScratch(Classifier):
    """Explicit W ~ N(0, σ²) and b, softmax and cross-entropy written out, SGD written out (D2L 4.4)."""

    def __init__(
        self,
        num_inputs: int | None = None,
        num_outputs: int | None = None,
        lr: float = 0.1,
        l2: float = 0.0,
        sigma: float = 0.01,
        init_seed: int | None = None,
    ) -> None:
        super().__init__(num_inputs, num_outputs, lr=lr, l2=l2, init_seed=init_seed)
        self.sigma = sigma

    def build(self) -> None:
        self.W = nn.Parameter(torch.normal(0.0, self.sigma, (self.num_inputs, self.num_outputs)))
        self.b = nn.Parameter(torch.zeros(self.num_outputs))

    def forward(self, X: Tensor) -> Tensor:
        """Logits o = XW + b; probabilities are ``softmax(o)``."""
        return X.reshape(-1, self.W.shape[0]) @ self.W + self.b

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return cross_entropy(logits, y)

    def default_optimizer(self) -> MinibatchSGD:
        return MinibatchSGD(self.parameters(), self.lr)


def softmax(logits: Tensor) -> Tensor:
    """exp(oⱼ − max o) / Σₖ exp(oₖ − max o): the shift changes nothing but keeps exp from overflowing."""
    shifted = logits - logits.max(dim=1, keepdim=True).values
    exp = torch.exp(shifted)
    return exp / exp.sum(dim=1, keepdim=True)


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean of −log softmax(o)_y, computed as log-sum-exp(o) − o_y so it stays finite (D2L 4.5.2)."""
    top = logits.max(dim=1, keepdim=True).values
    log_sum_exp = top.squeeze(1) + torch.log(torch.exp(logits - top).sum(dim=1))
    return (log_sum_exp - logits.gather(1, y.reshape(-1, 1)).squeeze(1)).mean()
