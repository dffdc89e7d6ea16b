"""Figures of the models' building blocks: activation functions and their derivatives (D2L 5.1.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from lit_d2l.models.activations import concise


def plot_activations(names: Sequence[str] = ("relu", "sigmoid", "tanh"), limit: float = 8.0) -> Figure:
    """Each activation and its derivative (by autograd) over [−limit, limit], one panel per name."""
    x = torch.linspace(-limit, limit, 801, requires_grad=True)
    fig = Figure(figsize=(4.2 * len(names), 3.4))  # not registered with pyplot: no backend switch
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        y = concise(name)(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        ax.plot(x.detach(), y.detach(), label=f"{name}(x)")
        ax.plot(x.detach(), grad, "--", label=f"{name}'(x)")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
