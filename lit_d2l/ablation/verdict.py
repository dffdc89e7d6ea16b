"""A sweep's verdict: which arm is best on a metric, by how much, and whether the seeds can tell it apart.

Each arm is summarised by the mean ± std of the metric over its seeds. The best arm is compared with the
runner-up by a t-test over seeds: paired when both arms ran the same seeds (the seed fixes data and
initialisation, so the pairs share their noise), Welch's otherwise. p < :data:`ALPHA` makes the best arm
distinguishable; otherwise the two are a tie. An arm with a diverged seed cannot win: it is listed apart.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from lit_d2l.ablation.arm_values import label, settings, short, sortable
from lit_d2l.tracking.sweeps import Child

#: The significance level of the comparison with the runner-up.
ALPHA = 0.05


def higher_is_better(metric: str) -> bool:
    """Accuracies and counts of distinct units are maximised; losses, norms and errors minimised."""
    name = metric.rsplit("/", 1)[-1]
    return "acc" in name or metric.startswith("distinct_units")


@dataclass(frozen=True)
class ArmResult:
    """One arm's values of the metric over its seeds (diverged seeds left out and counted)."""

    arm: str
    values: dict[int, float]  # seed -> value
    diverged: int = 0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.pstdev(self.values.values()) if len(self.values) > 1 else 0.0

    def summary(self) -> str:
        if len(self.values) == 1:
            return f"{self.mean:.4g} (1 seed)"
        return f"{self.mean:.4g} ± {self.std:.2g} over {len(self.values)} seeds"


@dataclass(frozen=True)
class Comparison:
    """The best arm against the runner-up: the test used, its p-value, and whether that separates them."""

    runner_up: ArmResult
    test: str
    p_value: float | None  # None: too few seeds to test

    @property
    def distinguishable(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def text(self) -> str:
        if self.p_value is None:
            return f"not tested against the runner-up {self.runner_up.arm} ({self.test}): run more seeds"
        relation = "better than" if self.distinguishable else "a tie with"
        other = self.runner_up
        return f"{relation} the runner-up {other.arm} ({other.summary()}; {self.test}, p = {self.p_value:.2g})"


@dataclass(frozen=True)
class Verdict:
    """The best arm of one metric, its comparison with the runner-up, and the arms that could not compete."""

    metric: str
    best: ArmResult | None
    comparison: Comparison | None
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (arm, why)

    @property
    def tie(self) -> bool:
        return (
            self.comparison is not None and self.comparison.p_value is not None and not self.comparison.distinguishable
        )

    def text(self) -> str:
        goal = "highest" if higher_is_better(self.metric) else "lowest"
        if self.best is None:
            return f"`{self.metric}`: no arm finished without diverging, so none is best."
        line = f"`{self.metric}` ({goal} is best): **{self.best.arm}**, {self.best.summary()}"
        if self.comparison is not None:
            line += f"; {self.comparison.text()}"
        if self.excluded:
            line += "; out of the running: " + ", ".join(f"{arm} ({why})" for arm, why in self.excluded)
        return line + "."


def arm_results(children: list[Child], metric: str) -> tuple[list[ArmResult], list[tuple[str, str]]]:
    """Each arm's finished values of ``metric`` (best first), and the arms excluded with the reason."""
    values: dict[str, dict[int, float]] = defaultdict(dict)
    diverged: dict[str, int] = defaultdict(int)
    for child in children:
        if child.outcome == "diverged":
            diverged[child.arm] += 1
        elif child.status == "FINISHED" and _finite(child.metrics.get(metric)):
            values[child.arm][child.seed] = child.metrics[metric]
    excluded = [(arm, f"{count} seed(s) diverged") for arm, count in sorted(diverged.items())]
    sign = -1.0 if higher_is_better(metric) else 1.0
    results = [ArmResult(arm, seeds, diverged[arm]) for arm, seeds in values.items() if seeds and arm not in diverged]
    return sorted(results, key=lambda r: (sign * r.mean, r.arm)), excluded


def verdict(children: list[Child], metric: str) -> Verdict:
    """The verdict on ``metric`` over the sweep's FINISHED children (one per arm × seed)."""
    ranked, excluded = arm_results(children, metric)
    if not ranked:
        return Verdict(metric, None, None, excluded)
    best = ranked[0]
    comparison = compare(best, ranked[1]) if len(ranked) > 1 else None
    return Verdict(metric, best, comparison, excluded)


def verdicts_per_group(children: list[Child], metric: str, key: str) -> list[tuple[str, Verdict]]:
    """With several keys swept: for each value of ``key``, the verdict among the arms holding that value."""
    groups: dict[str, list[Child]] = defaultdict(list)
    values: dict[str, Any] = {}
    for child in children:
        arm = settings(child)
        if key in arm:
            text = label(arm[key])
            groups[text].append(child)
            values[text] = arm[key]
    order = sorted(groups, key=lambda text: sortable(values[text]))
    return [(f"{short(key)}={text}", verdict(groups[text], metric)) for text in order]


def compare(best: ArmResult, other: ArmResult) -> Comparison:
    """A paired t-test over the seeds both arms ran (two or more), else Welch's t-test (two or more seeds each)."""
    shared = sorted(set(best.values) & set(other.values))
    if len(shared) >= 2 and len(shared) == len(best.values) == len(other.values):
        differences = [best.values[s] - other.values[s] for s in shared]
        test = f"paired t-test over seeds {', '.join(map(str, shared))}"
        if _constant(differences):  # no spread: the t statistic is undefined (or rounding noise), the answer is not
            return Comparison(other, test, 0.0 if differences[0] != 0 else 1.0)
        pairs = [best.values[s] for s in shared], [other.values[s] for s in shared]
        return Comparison(other, test, float(stats.ttest_rel(*pairs).pvalue))
    if min(len(best.values), len(other.values)) < 2:
        return Comparison(other, "one seed", None)
    a, b = list(best.values.values()), list(other.values.values())
    test = "Welch's t-test"
    if _constant(a) and _constant(b):
        return Comparison(other, test, 0.0 if a[0] != b[0] else 1.0)
    return Comparison(other, test, float(stats.ttest_ind(a, b, equal_var=False).pvalue))


def _constant(values: list[float]) -> bool:
    """Equal up to floating-point rounding."""
    return max(values) - min(values) <= 1e-9 * max(abs(v) for v in values)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and abs(value) < 1e300
