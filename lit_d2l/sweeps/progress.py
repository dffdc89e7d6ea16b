"""Progress of K folds or N sweep arms: one line per finished unit, with elapsed time and an ETA."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lit_d2l.processes.terminal import clock_time

#: The outcomes a summary always counts, in this order (others follow as they occur).
OUTCOMES = ("finished", "diverged", "failed", "skipped")


@dataclass
class Progress:
    """``report`` prints ``<unit> i/N <label>: <outcome> <detail> (elapsed m:ss, ETA m:ss)``.

    The ETA is weighted by work: each unit may say how much it has (a sweep's pair: its training steps).
    A unit costs a fixed part (building, parsing, its MLflow run) plus a part per unit of work, so the
    elapsed time at each report is fitted as ``a × units done + b × work done`` (least squares, both
    costs ≥ 0) and the rest is predicted from the units and work left. Until the reports tell the two
    costs apart (units of one size), the rest goes as fast as the finished work went,
    ``elapsed × remaining / done``. With workers the observed times already include their parallelism.
    Without weights every unit counts as one, and the ETA is that of finished units.
    """

    unit: str
    total: int
    echo: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    work: float | None = None  # of all units (None: one per unit)

    def __post_init__(self) -> None:
        self.work = float(self.total) if self.work is None else self.work
        self.work_done, self.start, self.counts = 0.0, self.clock(), Counter[str]()
        self.points: list[tuple[float, float, float]] = []  # (units done, work done, elapsed) at each report

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def credit(self, work: float, units: int = 1) -> None:
        """Count ``work`` as done before reporting ``units`` that ended together (a pack's arms, each reported
        with ``work=0``), so that their lines show one ETA."""
        self.work_done += work
        self.points.append((float(self.done + units), self.work_done, self.elapsed))

    def report(self, label: str, outcome: str, detail: str = "", work: float = 1.0) -> None:
        """One unit (of ``work``) ended with ``outcome`` (finished, diverged, failed, skipped)."""
        self.counts[outcome] += 1
        self.work_done += work
        elapsed, done = self.elapsed, self.done
        if work:  # else its point came with the credit of the units it ended with
            self.points.append((float(done), self.work_done, elapsed))
        eta = self.eta()
        name = f"{self.unit} {done}/{self.total}" + (f" {label}" if label else "")
        text = f"{outcome} {detail}".rstrip()
        self.echo(f"{name}: {text} (elapsed {clock_time(elapsed)}, ETA {clock_time(eta)})")

    def eta(self) -> float:
        """Seconds left: the fitted cost of the units and work left, else the finished work's rate."""
        units_left = max(self.total - self.done, 0)
        work_left = max(self.work - self.work_done, 0.0)
        if not units_left or not work_left:
            return 0.0
        costs = fixed_and_work_cost(self.points)
        if costs is not None:
            return costs[0] * units_left + costs[1] * work_left
        return self.elapsed * work_left / self.work_done if self.work_done > 0 else 0.0

    def summary(self) -> str:
        """``12 arms in 1:05: 10 finished, 1 diverged, 1 failed, 0 skipped``."""
        return f"{plural(self.done, self.unit)} in {clock_time(self.elapsed)}: {tally(self.counts)}"


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def fixed_and_work_cost(points: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(Seconds a unit, seconds a unit of work) that best fit ``elapsed ≈ a × units + b × work`` over the
    ``(units, work, elapsed)`` points, both ≥ 0; None while the points cannot tell them apart (every unit
    of one size) or the fit has no positive cost."""
    suu = sum(u * u for u, _, _ in points)
    sww = sum(w * w for _, w, _ in points)
    suw = sum(u * w for u, w, _ in points)
    det = suu * sww - suw * suw
    if det <= 1e-9 * suu * sww:  # units and work in one proportion: no way to split the cost
        return None
    sut = sum(u * t for u, _, t in points)
    swt = sum(w * t for _, w, t in points)
    a, b = (sww * sut - suw * swt) / det, (suu * swt - suw * sut) / det
    if a < 0:  # no fixed cost to see: all of it per unit of work
        a, b = 0.0, swt / sww
    elif b < 0:  # all of it per unit
        a, b = sut / suu, 0.0
    return (a, b) if a > 0 or b > 0 else None


def tally(counts: Counter[str]) -> str:
    """Every outcome of :data:`OUTCOMES` with its count (zeros included), then any other outcome."""
    kinds = [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]
    return ", ".join(f"{counts[kind]} {kind}" for kind in kinds)
