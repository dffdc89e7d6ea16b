"""What every report figure shares: which values can be drawn, axis scales, edge marks, colour and panels.

MLflow stores ±inf as ±1.8e308, so |v| ≥ 1e300 counts as non-finite like inf and NaN: such values never
set an axis range; they are marked with × on the top edge. On a log axis, values ≤ 0 (a gradient
that underflowed) are marked with ▾ on the bottom edge. Every other value lies inside the limits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lit_d2l.sweeps.arm_values import label, short, sortable

#: At or beyond this magnitude a stored value stands for ±inf (MLflow writes ±inf as ±1.8e308).
HUGE = 1e300
#: Up to this many colours get a legend; more get a colour bar.
MAX_LEGEND = 10
TOP, BOTTOM = "non-finite", "zero"
MARKS = {
    TOP: dict(marker="x", markersize=7, markeredgewidth=1.8, label="× on the top edge: inf/NaN (diverged)"),
    BOTTOM: dict(marker="v", markersize=6, label="▾ on the bottom edge: 0 (below a log axis)"),
}


def finite(value: Any) -> bool:
    """A number that can be drawn: not NaN, not ±inf, not MLflow's ±1.8e308 stand-in."""
    return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) < HUGE


@dataclass(frozen=True)
class Scale:
    """A y axis: linear or log, with finite limits holding every drawable value."""

    log: bool
    limits: tuple[float, float]

    def drawable(self, value: float) -> bool:
        return finite(value) and (value > 0 or not self.log)

    def apply(self, ax: Axes) -> None:
        if self.log:
            ax.set_yscale("log")
        ax.set_ylim(*self.limits)


def scale_for(values: Iterable[float]) -> Scale:
    """Log when the finite values are ≥ 0 and their positive part spans 2 decades or more, else linear."""
    numbers = [v for v in values if finite(v)]
    positive = [v for v in numbers if v > 0]
    if positive and min(numbers) >= 0 and max(positive) >= 100 * min(positive):
        lo, hi = math.log10(min(positive)), math.log10(max(positive))
        pad = max(0.04 * (hi - lo), 0.05)
        low = 10.0 ** (lo - pad) or min(positive)  # 0.0 only below the smallest subnormal
        return Scale(True, (min(low, min(positive)), 10.0 ** min(hi + pad, 307.0)))
    if not numbers:
        return Scale(False, (0.0, 1.0))
    lo, hi = min(numbers), max(numbers)
    pad = 0.06 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 0.5
    return Scale(False, (lo - pad, hi + pad))


def draw(ax: Axes, xs: list[float], ys: list[float], colour: Any, scale: Scale, **style: Any) -> set[str]:
    """Plot the drawable points as one line (gaps where a point is not drawable) and mark the others on
    the axis edge; returns the kinds of mark used."""
    ax.plot(xs, [y if scale.drawable(y) else math.nan for y in ys], color=colour, **style)
    marks = mark(ax, [x for x, y in zip(xs, ys, strict=True) if not finite(y)], colour, TOP)
    if scale.log:
        marks |= mark(ax, [x for x, y in zip(xs, ys, strict=True) if finite(y) and y <= 0], colour, BOTTOM)
    return marks


def mark(ax: Axes, xs: list[float], colour: Any, kind: str) -> set[str]:
    """Marks at data ``xs`` on the top (non-finite) or bottom (zero on a log axis) edge of ``ax``."""
    if not xs:
        return set()
    style = {k: v for k, v in MARKS[kind].items() if k != "label"}
    y = 1.0 if kind == TOP else 0.0
    ax.plot(
        xs, [y] * len(xs), linestyle="none", color=colour, transform=ax.get_xaxis_transform(), clip_on=False, **style
    )
    return {kind}


def mark_handles(marks: set[str]) -> list[Line2D]:
    """Legend entries explaining the edge marks that a figure used."""
    return [Line2D([], [], linestyle="none", color="0.3", **MARKS[kind]) for kind in (TOP, BOTTOM) if kind in marks]


@dataclass
class Keying:
    """Which swept keys colour the lines and which split the figure into panels."""

    colour_keys: list[str]
    facet_keys: list[str]
    colours: dict[str, Any] = field(default_factory=dict)  # colour label → colour, in order
    facets: list[str] = field(default_factory=list)  # facet labels, in order

    def colour_label(self, settings: dict[str, Any]) -> str:
        present = [k for k in self.colour_keys if k in settings]
        if len(self.colour_keys) > 1 and self.facet_keys:  # the main key's value, then the keys that come with it
            main, *rest = present
            return " ".join([label(settings[main]), *(f"{short(k)}={label(settings[k])}" for k in rest)])
        if len(present) == 1:
            return label(settings[present[0]])
        return ", ".join(f"{short(k)}={label(settings[k])}" for k in present) or "all runs"

    def facet_label(self, settings: dict[str, Any]) -> str:
        return ", ".join(f"{short(k)}={label(settings[k])}" for k in self.facet_keys if k in settings)

    @property
    def title(self) -> str:
        return ", ".join(short(k) for k in self.colour_keys[: 1 if self.facet_keys else None]) or "arm"

    def add_key(self, fig: Figure, axes: list[Axes], marks: set[str], extra: list[Line2D] = ()) -> None:
        """A legend of the colours (or a colour bar when there are many) and of the marks, right of the panels."""
        handles = [*extra, *mark_handles(marks)]
        if len(self.colours) > MAX_LEGEND:
            names = list(self.colours)
            cmap = ListedColormap(list(self.colours.values()))  # the lines' own colours, one bin each, however many
            norm = BoundaryNorm(range(len(names) + 1), cmap.N)
            bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, fraction=0.04, pad=0.02)
            every = -(-len(names) // 25)
            bar.set_ticks([i + 0.5 for i in range(0, len(names), every)], labels=names[::every], fontsize=7)
            bar.set_label(self.title)
        else:
            handles = [Line2D([], [], color=c, marker="o", label=n) for n, c in self.colours.items()] + handles
        if handles:
            title = self.title if len(self.colours) <= MAX_LEGEND and self.colour_keys else None
            fig.legend(handles=handles, loc="outside right upper", fontsize=7, title=title, title_fontsize=8)


def keying(all_settings: list[dict[str, Any]], leave_out: str | None = None) -> Keying:
    """Colour by every varying key when they make few combinations; else colour by the key with the most
    values (with keys that only some arms set, e.g. ``init_std``) and give each setting of the others a panel."""
    keys: list[str] = []
    for settings in all_settings:  # in the arms' order: a key only some arms set goes after its predecessor
        previous = None
        for k in settings:
            if k not in keys and k != leave_out:
                keys.insert(keys.index(previous) + 1 if previous else 0, k)
            previous = k if k in keys else previous
    values = {k: {label(s[k]) for s in all_settings if k in s} for k in keys}
    everywhere = [k for k in keys if all(k in s for s in all_settings)]
    varying = [k for k in keys if len(values[k]) > 1 or k not in everywhere]
    combos = {tuple(label(s.get(k)) for k in varying) for s in all_settings}
    full = [k for k in varying if k in everywhere]
    if len(combos) <= MAX_LEGEND or not full:
        result = Keying(varying, [])
    else:
        main = max(full, key=lambda k: len(values[k]))
        result = Keying([main, *(k for k in varying if k not in everywhere)], [k for k in full if k != main])

    def order(keys_: list[str]):
        return lambda s: tuple(sortable(s[k]) if k in s else (-1,) for k in keys_)

    by_colour = sorted(all_settings, key=order(result.colour_keys))
    names = list(dict.fromkeys(result.colour_label(s) for s in by_colour))
    if len(names) <= MAX_LEGEND:
        palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        result.colours = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    else:
        cmap = matplotlib.colormaps["viridis"]
        result.colours = {n: cmap((i + 0.5) / len(names)) for i, n in enumerate(names)}
    result.facets = list(
        dict.fromkeys(result.facet_label(s) for s in sorted(all_settings, key=order(result.facet_keys)))
    )
    return result


def panel_grid(facets: int, per_facet: int, widest: int = 3) -> tuple[int, int]:
    """(rows, facets per row): facets side by side while a row holds at most ``widest`` panels,
    as many per row as divide the facets evenly (3 × 3 for 9)."""
    across = max(1, widest // per_facet)
    across = max(n for n in range(1, min(across, facets) + 1) if facets % n == 0)
    return -(-facets // across), across
