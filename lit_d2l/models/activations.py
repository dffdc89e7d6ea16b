"""Activation functions by name, with the derivatives that hand-written backprop needs (D2L 5.1.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lit_d2l.errors import require


# Named functions, not lambdas: a model holding them must pickle (ddp_spawn sends it to its workers).
def relu(z: Tensor) -> Tensor:
    return torch.clamp(z, min=0)


def relu_prime(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def sigmoid_prime(z: Tensor) -> Tensor:
    return torch.sigmoid(z) * (1 - torch.sigmoid(z))


def tanh_prime(z: Tensor) -> Tensor:
    return 1 - torch.tanh(z) ** 2


# name -> (function, derivative), written out for the from-scratch models.
SCRATCH: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "relu": (relu, relu_prime),
    "sigmoid": (torch.sigmoid, sigmoid_prime),
    "tanh": (torch.tanh, tanh_prime),
}

CONCISE: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def concise(name: str) -> nn.Module:
    """The ``torch.nn`` module of an activation name."""
    require(name in CONCISE, f"model.activation must be one of {', '.join(CONCISE)}; got {name!r}")
    return CONCISE[name]()


def scratch(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """The written-out function and derivative of an activation name."""
    require(name in SCRATCH, f"model.activation must be one of {', '.join(SCRATCH)} (from scratch); got {name!r}")
    return SCRATCH[name]
