"""Weight initialisation schemes (D2L 5.4.2): from tiny Gaussians to Xavier and Kaiming, and the symmetric trap."""

from __future__ import annotations

import math

import torch
from torch import nn

from lit_d2l.errors import require

SCHEMES = ("normal", "uniform", "xavier_normal", "xavier_uniform", "kaiming", "constant", "zeros")


def check_scheme(scheme: str) -> None:
    require(scheme in SCHEMES, f"model.init must be one of {', '.join(SCHEMES)}; got {scheme!r}")


@torch.no_grad()
def init_linear(layer: nn.Linear, scheme: str, std: float = 0.01, value: float = 0.0, bias: float = 0.0) -> None:
    """Initialise one layer's weight by ``scheme`` and set its bias to the constant ``bias``.

    ``normal``: N(0, std²). ``uniform``: U(±1/√n_in) (PyTorch's default scale). ``xavier_*``: variance
    2/(n_in + n_out). ``kaiming``: N(0, 2/n_in), for ReLU. ``constant``: every weight = ``value``, so
    all hidden units stay identical (symmetry is never broken). ``zeros``: constant 0.
    """
    check_scheme(scheme)
    weight = layer.weight
    if scheme == "normal":
        nn.init.normal_(weight, 0.0, std)
    elif scheme == "uniform":
        bound = 1 / math.sqrt(weight.shape[1])
        nn.init.uniform_(weight, -bound, bound)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    else:
        nn.init.constant_(weight, value if scheme == "constant" else 0.0)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)
