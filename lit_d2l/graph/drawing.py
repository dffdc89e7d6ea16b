"""The computation graph as a figure: variables in boxes, operators in circles, arrows in forward direction.

A plain :class:`~matplotlib.figure.Figure` (no pyplot, no system binary such as graphviz): ``savefig`` writes
it as PNG or SVG. Backpropagation runs the same arrows in reverse, from J back to every parameter (D2L 5.3.3).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch

from lit_d2l.graph.layout import layout
from lit_d2l.graph.model import ComputationGraph, Node

STYLES = {  # kind → (face colour, edge colour, line width, what the legend calls it)
    "input": ("#e8e8e8", "#555555", 1.0, "data (x, y)"),
    "parameter": ("#fde2c4", "#c06000", 1.0, "parameter (learned)"),
    "variable": ("#dcebfa", "#2a5d9f", 1.0, "intermediate variable"),
    "objective": ("#d8f0d2", "#2e7d32", 2.2, "loss L, penalty s, objective J"),
    "operator": ("#ffffff", "#333333", 1.0, "operator"),
}
DX, DY = 1.25, 1.15  # distance between columns and rows, in inches
BOX_W, BOX_H, RADIUS = 0.78, 0.46, 0.30


def draw_graph(graph: ComputationGraph) -> Figure:
    """The figure of ``graph``: left to right in forward order, with a legend and the title below."""
    positions = layout(graph)
    cols = [c for c, _ in positions.values()]
    rows = [r for _, r in positions.values()]
    width = (max(cols) - min(cols)) * DX + 2 * DX
    height = (max(rows) - min(rows)) * DY + 2.4
    width = max(width, 10.0, 0.065 * len(graph.subtitle))  # room for the title, the legend and the subtitle
    fig = Figure(figsize=(width, height), dpi=min(100, 8000 / width))  # a deep network's PNG stays ≤ 8000 px wide
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(cols) * DX - DX, min(cols) * DX - DX + width)
    ax.set_ylim(min(rows) * DY - 1.3, max(rows) * DY + 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    for node_id, node in graph.nodes.items():
        col, row = positions[node_id]
        _node(ax, node, col * DX, row * DY)
    for source, target in graph.edges:
        (c0, r0), (c1, r1) = positions[source], positions[target]
        start, end = (c0 * DX, r0 * DY), (c1 * DX, r1 * DY)
        bend = 0.0 if r0 == r1 or c1 - c0 <= 1 else 0.1 * (-1 if r1 > r0 else 1)  # long edges bow outwards
        arrow = FancyArrowPatch(
            _edge_point(graph.nodes[source], start, end),
            _edge_point(graph.nodes[target], end, start),
            arrowstyle="-|>",
            mutation_scale=12,
            color="#444444",
            linewidth=1.1,
            shrinkA=1,
            shrinkB=1,
            connectionstyle=f"arc3,rad={bend}",
            zorder=2,
        )
        ax.add_patch(arrow)
    kinds = [kind for kind in STYLES if any(n.kind == kind for n in graph.nodes.values())]
    ax.legend(
        handles=[_legend_entry(kind) for kind in kinds],
        loc="lower left",
        ncols=len(kinds),
        fontsize=8,
        frameon=False,
    )
    if graph.title:
        ax.text(0.01, 0.985, graph.title, transform=ax.transAxes, fontsize=11, va="top", weight="bold")
    if graph.subtitle:
        ax.text(0.01, 0.985 - 0.3 / height, graph.subtitle, transform=ax.transAxes, fontsize=8, va="top", color="#444")
    return fig


def _edge_point(node: Node, centre: tuple[float, float], toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from ``centre`` to ``toward`` leaves the node's circle or box (cheaper than clipping)."""
    dx, dy = toward[0] - centre[0], toward[1] - centre[1]
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    if node.kind == "operator":
        t = RADIUS / length
    else:
        t = min(BOX_W / 2 / abs(dx) if dx else float("inf"), BOX_H / 2 / abs(dy) if dy else float("inf"))
    return centre[0] + dx * t, centre[1] + dy * t


def _legend_entry(kind: str) -> Patch | Line2D:
    face, edge, line, text = STYLES[kind]
    if kind == "operator":
        return Line2D([], [], marker="o", markersize=11, markerfacecolor=face, markeredgecolor=edge,
                      linestyle="none", label=text)  # fmt: skip
    return Patch(facecolor=face, edgecolor=edge, linewidth=line, label=text)


def _node(ax, node: Node, x: float, y: float) -> None:
    face, edge, line, _ = STYLES[node.kind]
    if node.kind == "operator":
        patch = Circle((x, y), RADIUS, facecolor=face, edgecolor=edge, linewidth=line, zorder=3)
        long = node.label.startswith(r"$\frac") or (len(node.label) > 3 and not node.label.startswith("$"))
        size, below = (9 if long else 15), RADIUS
    else:
        rounding = 0.12 if node.kind == "parameter" else 0.02
        patch = FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle=f"round,pad=0,rounding_size={rounding}",
            facecolor=face,
            edgecolor=edge,
            linewidth=line,
            zorder=3,
        )
        size, below = (14 if node.label.startswith("$") else 8), BOX_H / 2
    ax.add_patch(patch)
    ax.text(x, y, node.label, ha="center", va="center", fontsize=size, zorder=4)
    if node.note:
        ax.text(x, y - below - 0.05, node.note, ha="center", va="top", fontsize=6.5, color="#555555", zorder=4)
