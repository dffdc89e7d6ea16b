"""Minibatch stochastic gradient descent with the update written out (D2L 3.4.3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class MinibatchSGD(torch.optim.Optimizer):
    """θ ← θ − η ∇θ, with the gradient already averaged over the minibatch by the loss."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param -= group["lr"] * param.grad
        return loss
