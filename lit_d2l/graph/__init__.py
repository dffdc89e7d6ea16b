"""The objective's computation graph, from the autograd graph of one training step (D2L 5.3.2).

``computation_graph`` (torch) and ``draw_graph`` (matplotlib) are imported on first use, so that
``lit-d2l graph --help`` answers without them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_d2l.graph.model import ComputationGraph, Node

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from lit_d2l.graph.autograd import computation_graph
    from lit_d2l.graph.drawing import draw_graph

#: The artifact files, in the run and in ``lit-d2l graph --out``.
FILES = ("graph.svg", "graph.png")


def graph_figure(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[ComputationGraph, Figure]:
    """The graph of J for one minibatch, titled with the model and its penalty, and its figure."""
    from lit_d2l.graph.autograd import computation_graph
    from lit_d2l.graph.drawing import draw_graph

    graph = computation_graph(model, batch)
    # λ's value is the run's param, not part of the figure: arms that differ only in λ > 0 share one drawing.
    objective = "J = L + s, s = λ/2 Σ‖W‖²" if "s" in graph.nodes else "J = L (no penalty: λ = 0)"
    graph.title = f"{type(model).__name__}: the computation graph of one training step (D2L 5.3)"
    graph.subtitle = (
        f"{objective}. Forward propagation follows the arrows; backpropagation runs them in reverse, "
        "from J back to every parameter."
    )
    return graph, draw_graph(graph)


def save_figure(figure: Figure, folder: Path) -> list[Path]:
    """``graph.svg`` and ``graph.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in FILES]
    for path in paths:
        figure.savefig(path)
    return paths


__all__ = ["FILES", "ComputationGraph", "Node", "computation_graph", "draw_graph", "graph_figure", "save_figure"]


def __getattr__(name: str) -> Any:
    home = {"computation_graph": "autograd", "draw_graph": "drawing"}.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"lit_d2l.graph.{home}"), name)
