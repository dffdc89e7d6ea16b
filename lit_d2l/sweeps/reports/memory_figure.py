"""The report's memory figure: what a training step saves for backward, against depth and batch size (D2L 5.3.3).

Read from the ``memory/*`` metrics each fit logs at its first step (:mod:`lit_d2l.callbacks.memory`).
Inference saves nothing; training keeps each layer's input for backward, so the bytes grow with the
number of layers and, per example, linearly with the batch size.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from matplotlib.figure import Figure

from lit_d2l.sweeps.arm_values import label, settings, short
from lit_d2l.tracking.sweeps import Child

SAVED = "memory/saved_for_backward_bytes"
PER_EXAMPLE = "memory/saved_for_backward_bytes_per_example"
FIXED = "memory/saved_for_backward_bytes_fixed"
KIB = 1024.0


def memory_figure(children: list[Child]) -> Figure | None:
    """Left: saved bytes of one training step against the number of hidden layers, a line per setting of
    the other swept keys (initialisation left out: it changes no shape). Right: saved bytes against the
    batch size, fixed + per example × batch, a line per depth; dots at the batch size that was measured.
    None unless the arms differ in depth."""
    runs = [c for c in children if SAVED in c.metrics and PER_EXAMPLE in c.metrics and FIXED in c.metrics]
    if len({hidden_layers(c) for c in runs}) < 2:  # depth not swept: a figure of one point says nothing
        return None
    by_group: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_depth: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for child in runs:
        depth = hidden_layers(child)
        others = {k: v for k, v in settings(child).items() if k != "model.depth" and "init" not in k}
        group = ", ".join(f"{short(k)}={label(v)}" for k, v in sorted(others.items())) or "all arms"
        by_group[group][depth].append(child.metrics[SAVED] / KIB)
        by_depth[depth].append((child.metrics[FIXED] / KIB, child.metrics[PER_EXAMPLE] / KIB))
    fig = Figure(figsize=(11.0, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for group, points in sorted(by_group.items()):
        depths = sorted(points)
        left.plot(depths, [statistics.fmean(points[d]) for d in depths], marker="o", label=group)
    left.set_xlabel("hidden layers")
    left.set_ylabel("saved for backward (KiB)")
    left.set_title("one training step, the sweep's batch size", fontsize=9)
    left.legend(fontsize=7)
    measured = sorted(
        {round((c.metrics[SAVED] - c.metrics[FIXED]) / c.metrics[PER_EXAMPLE]) for c in runs if c.metrics[PER_EXAMPLE]}
    ) or [1]
    top = 4 * max(measured)
    for depth in sorted(by_depth):
        fixed = statistics.fmean(f for f, _ in by_depth[depth])
        per_example = statistics.fmean(e for _, e in by_depth[depth])
        (line,) = right.plot([1, top], [fixed + per_example, fixed + per_example * top], label=f"{depth} hidden")
        right.plot(measured, [fixed + per_example * b for b in measured], "o", color=line.get_color())
    right.set_xlabel("batch size")
    right.set_ylabel("saved for backward (KiB)")
    right.set_title("fixed (weights) + per example × batch size; dot: measured", fontsize=9)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.suptitle("Memory a training step keeps for backward (inference keeps none): D2L 5.3.3", x=0.01, ha="left")
    return fig


def hidden_layers(child: Child) -> int:
    """The arm's ``model.depth``, else the length of its ``model.hidden_sizes``, from its swept settings."""
    swept = settings(child)
    depth, sizes = swept.get("model.depth"), swept.get("model.hidden_sizes")
    if isinstance(depth, int):
        return depth
    return len(sizes) if isinstance(sizes, list) and sizes else 1
