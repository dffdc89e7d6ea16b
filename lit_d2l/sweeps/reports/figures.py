"""The report's figures, one per question: final metrics along a swept axis, loss curves, gradient norms per layer.

Each metric gets its own panel and y label, with one y range shared by its panels; lines are coloured
by a swept key and the other keys split the figure into panels (see :func:`.figure_axes.keying`).
Non-finite values never set a range: they are marked on the edge (see :mod:`.figure_axes`).
Figures are plain :class:`~matplotlib.figure.Figure` objects, outside pyplot: no backend switch.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lit_d2l.sweeps.arm_values import first_seed_runs, label, settings, short, sortable
from lit_d2l.sweeps.reports.figure_axes import TOP, Keying, Scale, draw, finite, keying, mark, panel_grid, scale_for
from lit_d2l.tracking.sweeps import Child, SweepStore

TRAIN_J, TRAIN_L = "train/loss_epoch", "train/loss_data"
#: ``history(run_id, metric)`` → ``[(step, value), ...]``, as :meth:`SweepStore.history` reads it.
History = Callable[[str, str], list[tuple[int, float]]]
LayerTable = Callable[[str], list[dict[str, Any]]]  # a run's diagnostics/layers.csv rows


def along_axis_figure(children: list[Child], axis: str, metrics: list[str]) -> Figure | None:
    """Each metric's final value against ``axis``: a line through the mean over seeds, a dot per seed."""
    runs = [(settings(c), c) for c in children if axis in settings(c)]
    if not runs:
        return None
    metrics = plotted(children, metrics)
    key = keying([s for s, _ in runs], leave_out=axis)
    ticks = {label(v): v for v in sorted((s[axis] for s, _ in runs), key=sortable)}
    categories = any(isinstance(v, str) for v in ticks.values())  # relu, tanh: no line between them
    at = {name: i for i, name in enumerate(ticks)}
    # (facet, colour) → x → metric → [(value, diverged)]
    points: dict[tuple[str, str], dict[int, dict[str, list]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for s, child in runs:
        for metric in metrics:
            stored = stored_as(child, metric)
            value = child.metrics.get(stored, math.nan)
            if stored in child.metrics or child.outcome == "diverged":
                points[key.facet_label(s), key.colour_label(s)][at[label(s[axis])]][metric].append(
                    (value, child.outcome == "diverged")
                )
    scales = {
        m: scale_for(v for group in points.values() for by in group.values() for v, bad in by[m] if not bad)
        for m in metrics
    }
    fig, panels = _panels(key, metrics, width=2.9)
    marks: set[str] = set()
    for (facet, name), by_x in points.items():
        colour, shift = key.colours[name], _shift(key, name)
        for metric in metrics:
            ax = panels[facet, metric]
            xs = sorted(x for x in by_x if by_x[x][metric])
            good = {x: [v for v, bad in by_x[x][metric] if not bad and finite(v)] for x in xs}
            means = [statistics.fmean(good[x]) if good[x] else math.nan for x in xs]
            shifted = [x + shift for x in xs]
            line = {"linestyle": "none", "markersize": 6} if categories else {"markersize": 4, "linewidth": 1.4}
            marks |= draw(ax, shifted, means, colour, scales[metric], marker="o", **line)
            for x in xs:
                if good[x] and len(good[x]) < len(by_x[x][metric]):  # some seeds diverged, not all
                    marks |= mark(ax, [x + shift], colour, TOP)
                if len(good[x]) > 1:
                    draw(ax, [x + shift] * len(good[x]), good[x], colour, scales[metric], linestyle="none",
                         marker="o", markersize=3, alpha=0.35)  # fmt: skip
    for (facet, metric), ax in panels.items():
        ax.set_xticks(range(len(ticks)), list(ticks), rotation=30 if sum(map(len, ticks)) > 24 else 0, fontsize=7)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        _label_panel(ax, facet, scales[metric], _loss_label(metric), short(axis))
    seeds = Line2D([], [], color="0.3", marker="o", markersize=3, alpha=0.4, linestyle="none", label="one seed")
    key.add_key(fig, list(panels.values()), marks, [seeds])
    mean = "large dot" if categories else "line"
    _title(fig, f"Final {', '.join(metrics)} along {short(axis)} ({mean}: mean over seeds)")
    return fig


def curves_figure(children: list[Child], history: History) -> Figure | None:
    """The training data loss L (``train/loss_data`` when a penalty was on; arms with λ = 0 log only
    ``train/loss_epoch``, which is L there) and ``val/loss`` against the step, each arm's lowest seed.
    A diverged curve stops at its first non-finite value (or its last one), where × marks the step."""
    runs = first_seed_runs(children)
    train = _data_loss(runs)
    losses = [m for m in (train, "val/loss") if any(m in c.metrics for c in runs)]
    if not losses:
        return None
    key = keying([settings(c) for c in runs])
    series: dict[tuple[str, str], tuple[list[float], list[float], float | None]] = {}
    # Arms of different sizes line up by epoch (a run that diverged before its first epoch ended has none: epoch 1).
    by_epoch = any(history(c.run_id, "epoch") for c in runs)
    for child in runs:
        epoch_of = _epoch_of(history(child.run_id, "epoch")) if by_epoch else float
        for metric in losses:
            points = sorted(history(child.run_id, stored_as(child, metric)))
            steps, values, diverged_at = _until_divergence(child, points)
            at = None if diverged_at is None else epoch_of(diverged_at)
            series[child.run_id, metric] = [epoch_of(s) for s in steps], values, at
    scales = {m: scale_for(v for (_, metric), (_, ys, _) in series.items() if metric == m for v in ys) for m in losses}
    fig, panels = _panels(key, losses, width=3.3)
    marks: set[str] = set()
    for child in runs:
        s = settings(child)
        colour = key.colours[key.colour_label(s)]
        for metric in losses:
            ax = panels[key.facet_label(s), metric]
            steps, values, diverged_at = series[child.run_id, metric]
            marks |= draw(ax, steps, values, colour, scales[metric], linewidth=1.2)
            if diverged_at is not None:
                marks |= mark(ax, [diverged_at], colour, TOP)
                what = "diverged" if child.outcome == "diverged" else "non-finite"
                where = f"in epoch {diverged_at:g}" if by_epoch else f"at step {diverged_at:g}"
                _note(ax, f"× {key.colour_label(s)}: {what} {where}", colour)
    for (facet, metric), ax in panels.items():
        _label_panel(ax, facet, scales[metric], _loss_label(metric), "epoch" if by_epoch else "step")
    key.add_key(fig, list(panels.values()), marks)
    seeds = "lowest seed" if len({c.seed for c in runs}) == 1 else "lowest seed of each arm"
    _title(fig, f"Loss curves: training ({train}) and validation loss of each arm ({seeds})")
    return fig


def layer_table(store: SweepStore, run_id: str) -> list[dict[str, Any]]:
    """The run's per-layer diagnostics (``diagnostics/layers.csv``) as rows; none when it has no table."""
    from lit_d2l.callbacks.diagnostics import TABLE, read_table  # its writer's module loads torch: only when read

    if not any(a.path == TABLE for a in store.client.list_artifacts(run_id, "diagnostics")):
        return []
    return read_table(store.download(run_id, TABLE).read_text())


def grad_norms_figure(children: list[Child], layer_table: LayerTable) -> Figure | None:
    """The gradient norm of each layer's weight at the first logged step (D2L 5.4), each arm's lowest seed,
    from the run's ``diagnostics/layers.csv`` (``layer_table(run_id)``: its rows, input layer first)."""
    runs = first_seed_runs([c for c in children if "grad_norm/min" in c.metrics])
    norms = {}
    for child in runs:
        rows = [row for row in layer_table(child.run_id) if row.get("grad_norm") is not None]
        first = min((row["step"] for row in rows), default=None)
        norms[child.run_id] = [row["grad_norm"] for row in rows if row["step"] == first]
    runs = [child for child in runs if norms[child.run_id]]
    if not runs:
        return None
    key = keying([settings(c) for c in runs])
    scale = scale_for(v for values in norms.values() for v in values)
    fig, panels = _panels(key, ["grad"], width=3.6)
    marks: set[str] = set()
    for child in runs:
        s = settings(child)
        values = norms[child.run_id]
        ax = panels[key.facet_label(s), "grad"]
        marks |= draw(ax, list(range(1, len(values) + 1)), values, key.colours[key.colour_label(s)], scale, marker=".")
    for (facet, _), ax in panels.items():
        _label_panel(ax, facet, scale, "‖∂L/∂W‖ at step 0", "layer (input → output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    key.add_key(fig, list(panels.values()), marks)
    _title(fig, "Gradient norm of each layer's weight at initialisation (lowest seed of each arm)")
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def file_name(axis: str) -> str:
    """``along_model_l2.png`` for ``model.l2``."""
    return f"along_{re.sub(r'[^A-Za-z0-9_-]', '_', axis)}.png"


def _panels(key: Keying, metrics: list[str], width: float) -> tuple[Figure, dict[tuple[str, str], Axes]]:
    """A panel per facet × metric, a facet's metrics side by side; facets fill rows of up to 3 panels (legible at
    1,400 px in MLflow's artifact viewer)."""
    facets = key.facets or [""]
    rows, across = panel_grid(len(facets), len(metrics))
    columns = across * len(metrics)
    legend = 2.6 if len(key.colours) <= 10 else 1.6
    fig = Figure(figsize=(max(width * columns + legend, 10.0), 2.5 * rows + 0.9), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False)
    panels = {}
    for index, facet in enumerate(facets):
        for offset, metric in enumerate(metrics):
            panels[facet, metric] = grid[index // across][(index % across) * len(metrics) + offset]
    for ax in grid.flat[len(panels) :]:
        ax.axis("off")
    return fig, panels


def _label_panel(ax: Axes, facet: str, scale: Scale, ylabel: str, xlabel: str) -> None:
    scale.apply(ax)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if facet:
        ax.set_title(facet, fontsize=8)
    ax.grid(alpha=0.3)


def _title(fig: Figure, text: str) -> None:
    """The figure's title, from the left edge: clear of the legend on the right."""
    fig.suptitle(text, x=0.01, ha="left", fontsize=10)


def _note(ax: Axes, text: str, colour: Any) -> None:
    """A line of text in the panel's top-left corner, below the ones already there."""
    ax.text(0.02, 0.95 - 0.075 * len(ax.texts), text, color=colour, fontsize=6, va="top", transform=ax.transAxes)


def _shift(key: Keying, name: str) -> float:
    """A small x offset per colour, so that points and edge marks of different colours stay apart."""
    names = list(key.colours)
    return 0.25 * ((names.index(name) + 0.5) / len(names) - 0.5) if len(names) > 1 else 0.0


def _until_divergence(child: Child, points: list[tuple[int, float]]) -> tuple[list[int], list[float], int | None]:
    """The history up to its first non-finite value, and the step at which the run diverged (None if it did not)."""
    cut = next((i for i, (_, v) in enumerate(points) if not finite(v)), None)
    if cut is not None:
        return [s for s, _ in points[:cut]], [v for _, v in points[:cut]], points[cut][0]
    steps, values = [s for s, _ in points], [v for _, v in points]
    if child.outcome != "diverged":
        return steps, values, None
    tagged: Any = child.tags.get("diverged_at_step")
    return steps, values, int(tagged) if tagged is not None and tagged.lstrip("-").isdigit() else (steps or [0])[-1]


def plotted(children: list[Child], metrics: list[str]) -> list[str]:
    """The metrics a figure along an axis draws: L (:func:`_data_loss`) for ``train/loss_epoch``, to compare
    with ``val/loss``."""
    return [_data_loss(children) if m == TRAIN_J else m for m in metrics]


def _data_loss(children: list[Child]) -> str:
    """The training loss to compare with ``val/loss``: L (``train/loss_data``) when a penalty was on, else J,
    which is L there."""
    return TRAIN_L if any(TRAIN_L in c.metrics for c in children) else TRAIN_J


def stored_as(child: Child, metric: str) -> str:
    """The key ``metric`` is stored under for ``child``: an arm with λ = 0 logs L as ``train/loss_epoch`` only."""
    return TRAIN_J if metric == TRAIN_L and TRAIN_L not in child.metrics else metric


def _loss_label(metric: str) -> str:
    return f"{metric} (L)" if metric == TRAIN_L else metric


def _epoch_of(epochs: list[tuple[int, float]]) -> Callable[[int], float]:
    """Step → epochs trained (the epoch logged at or before the step, plus one): a run's ``epoch`` history
    holds the steps where the epoch changed."""
    changes = sorted(epochs)
    starts = [step for step, _ in changes]

    def epoch_of(step: int) -> float:
        index = bisect.bisect_right(starts, step) - 1
        return (changes[index][1] if index >= 0 else 0.0) + 1.0

    return epoch_of
