"""Multilayer perceptrons (D2L 5.1-5.2, 5.6): hidden layers, activation, dropout and initialisation by config."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from lit_d2l.errors import require
from lit_d2l.models import activations
from lit_d2l.models.base import Classifier
from lit_d2l.models.init import check_scheme, init_linear

DropoutImpl = Literal["torch", "scratch"]


class MLP(Classifier):
    """Flatten, then Linear → activation → dropout per hidden layer, then a Linear to the logits.

    ``depth``, when set, repeats the first hidden size ``depth`` times (for depth sweeps).
    ``dropout`` is one probability for every hidden layer or one per layer; ``dropout_impl``
    picks ``nn.Dropout`` or :class:`DropoutScratch`. ``init`` names the weight scheme
    (see :mod:`lit_d2l.models.init`), with ``init_std`` for ``normal``, ``init_value`` for
    ``constant`` and ``bias_init`` for every bias.
    """

    def __init__(
        self,
        hidden_sizes: list[int] = [256],  # noqa: B006 - jsonargparse shows defaults from the signature
        depth: int | None = None,
        activation: str = "relu",
        dropout: float | list[float] = 0.0,
        dropout_impl: DropoutImpl = "torch",
        init: str = "normal",
        init_std: float = 0.01,
        init_value: float = 0.0,
        bias_init: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if depth is not None:  # `depth` layers as wide as the first of hidden_sizes, for depth sweeps
            require(depth > 0, f"model.depth must be > 0, got {depth}")
            hidden_sizes = hidden_sizes[:1] * depth
        require(len(hidden_sizes) > 0, "model.hidden_sizes needs at least one layer, e.g. [256]")
        require(all(h > 0 for h in hidden_sizes), f"model.hidden_sizes must all be > 0, got {hidden_sizes}")
        activations.concise(activation)  # validates the name
        check_scheme(init)
        probabilities = dropout if isinstance(dropout, list) else [dropout] * len(hidden_sizes)
        require(
            len(probabilities) == len(hidden_sizes),
            f"model.dropout has {len(probabilities)} values for {len(hidden_sizes)} hidden layers",
        )
        require(all(0 <= p < 1 for p in probabilities), f"model.dropout must be in [0, 1), got {dropout}")
        require(
            dropout_impl in ("torch", "scratch"), f"model.dropout_impl must be torch or scratch, got {dropout_impl!r}"
        )
        super().__init__(**kwargs)
        self.hidden_sizes, self.activation, self.dropout = list(hidden_sizes), activation, probabilities
        self.dropout_impl = dropout_impl
        self.init_args = {"scheme": init, "std": init_std, "value": init_value, "bias": bias_init}

    def build(self) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = [self.num_inputs, *self.hidden_sizes]
        for fan_in, fan_out, p in zip(sizes[:-1], sizes[1:], self.dropout, strict=True):
            layers += [nn.Linear(fan_in, fan_out), activations.concise(self.activation)]
            if p > 0:
                layers.append(nn.Dropout(p) if self.dropout_impl == "torch" else DropoutScratch(p))
        layers.append(nn.Linear(sizes[-1], self.num_outputs))
        self.net = nn.Sequential(*layers)
        for layer in self.linear_layers():
            init_linear(layer, **self.init_args)

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X)

    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]


class DropoutScratch(nn.Module):
    """Keep each unit with probability 1 − p and scale survivors by 1/(1 − p); identity in eval (D2L 5.6.2)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        require(0 <= p <= 1, f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, X: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return X
        if self.p == 1:
            return torch.zeros_like(X)
        mask = (torch.rand_like(X) > self.p).to(X.dtype)
        return mask * X / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
