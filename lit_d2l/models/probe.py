"""A side pass through a model's objective J = L + s with autograd on, leaving training as it was (D2L 5.3).

The computation graph and the memory figures of a training step are read off such a pass at the first
step: autograd records the graph of J (and saves what backward needs), but the pass draws no random
numbers from the training's streams and changes no buffer, so the fit that follows is the same as
without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Objective:
    """The data loss L, the penalty s = λ/2·Σ‖W‖² (None when λ = 0) and the objective J = L + s."""

    L: Tensor
    s: Tensor | None
    J: Tensor


def objective_of(model: nn.Module, output: Tensor, y: Tensor) -> Objective:
    """L, s and J of a :class:`~lit_d2l.models.D2LModule` whose forward pass gave ``output``."""
    data_loss = model.loss(output, y)
    penalty = model.l2_penalty() if model.l2 else None
    return Objective(data_loss, penalty, data_loss if penalty is None else data_loss + penalty)


@contextmanager
def autograd_probe(model: nn.Module) -> Iterator[None]:
    """Autograd on, the random streams and buffers restored afterwards.

    A model that computes its gradients by hand (no parameter requires grad, like ``MLPScratch``) has
    its parameters tracked for the duration; nothing calls backward, so no ``.grad`` changes.
    """
    parameters = list(model.parameters())
    by_hand = bool(parameters) and not any(p.requires_grad for p in parameters)
    buffers = [b.detach().clone() for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in parameters if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda), torch.enable_grad():
            if by_hand:
                for p in parameters:
                    p.requires_grad_(True)
            yield
    finally:
        if by_hand:
            for p in parameters:
                p.requires_grad_(False)
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
