"""SGD for a pack of arms: one update of every arm's parameters at once, each with its own settings (D2L 3.4.3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class PackedSGD(torch.optim.Optimizer):
    """Minibatch SGD with momentum and weight decay where every hyperparameter is a vector over the arms.

    Each parameter carries the arm axis first. Arm k takes exactly the step ``torch.optim.SGD`` (or
    lit-d2l's ``MinibatchSGD``, which is SGD without momentum and decay) would take alone:

        d = grad + wd_k · θ   (weights only)        b ← m_k · b + d        θ ← θ − lr_k · b

    ``settings()`` returns the current (lr, momentum, weight_decay, active) vectors; an inactive
    (diverged) arm is left exactly as it is, whatever its gradient holds (``active`` None: all step). A group with
    ``"momentum": False`` (no arm uses momentum) keeps no momentum buffer.
    """

    def __init__(
        self, groups: Iterable[dict[str, Any]], settings: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor | None]]
    ) -> None:
        super().__init__(list(groups), {"decay": False})
        self.settings = settings

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr, momentum, weight_decay, active = self.settings()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                shape = (-1,) + (1,) * (param.ndim - 1)
                keep = None if active is None else active.view(shape)
                direction = param.grad if keep is None else torch.where(keep, param.grad, 0.0)
                if group["decay"]:
                    direction = direction + weight_decay.view(shape) * param
                state = self.state[param]
                if "momentum_buffer" in state or group.get("momentum", True):
                    buffer = state.setdefault("momentum_buffer", torch.zeros_like(param))
                    buffer.mul_(momentum.view(shape)).add_(direction)
                    direction = buffer
                update = lr.view(shape) * direction
                param.sub_(update if keep is None else torch.where(keep, update, 0.0))
        return loss
