"""A sweep's verdict: which arm is best on a metric, by how much, and whether the seeds can tell it apart.

Each arm is summarised by the mean ± std of the metric over its seeds. The best arm is compared with the
runner-up by a t-test over seeds: paired when both arms ran the same seeds (the seed fixes data and
initialisation, so the pairs share their noise), Welch's otherwise. p < :data:`ALPHA` makes the best arm
distinguishable; otherwise the two are a tie. An arm with a diverged seed, or a seed without a finite value,
cannot win: it is listed apart. :mod:`lit_d2l.sweeps.selection` ranks arms the same way.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from lit_d2l.sweeps.arm_values import arm_name, arm_sort_key, label, settings, short, sortable
from lit_d2l.sweeps.reports.figure_axes import finite
from lit_d2l.tracking.sweeps import Child

#: The significance level of the comparison with the runner-up.
ALPHA = 0.05
#: Arms out of the running named in a verdict line; the table lists them all.
SHOWN_OUT = 3


def goal(metric: str) -> str | None:
    """ "min" for a loss, "max" for an accuracy, None where the name does not say (e.g. a weight norm)."""
    if "loss" in metric:
        return "min"
    if "acc" in metric:
        return "max"
    return None


@dataclass(frozen=True)
class ArmResult:
    """One arm's FINISHED runs (one per seed) and their values of the metric."""

    arm: str
    metric: str
    runs: tuple[Child, ...]

    @property
    def values(self) -> dict[int, float]:
        return {run.seed: run.metrics[self.metric] for run in self.runs}

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.pstdev(self.values.values()) if len(self.runs) > 1 else 0.0

    def summary(self, digits: int = 4) -> str:
        if len(self.runs) == 1:
            return f"{self.mean:.{digits}g} (1 seed)"
        return f"{self.mean:.{digits}g} ± {self.std:.2g} over {len(self.runs)} seeds"

    @property
    def name(self) -> str:
        """The arm's short name (:func:`~lit_d2l.sweeps.arm_values.arm_name`)."""
        return arm_name(self.runs[0])


@dataclass(frozen=True)
class Comparison:
    """The best arm against the runner-up: the test used, its p-value, and whether that separates them."""

    runner_up: ArmResult
    test: str
    p_value: float | None  # None: too few seeds to test

    @property
    def distinguishable(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def text(self, digits: int = 4) -> str:
        if self.p_value is None:
            return f"not tested against the runner-up {self.runner_up.name} ({self.test}): run more seeds"
        relation = "better than" if self.distinguishable else "a tie with"
        other = self.runner_up
        return f"{relation} the runner-up {other.name} ({other.summary(digits)}; {self.test}, p = {self.p_value:.2g})"


@dataclass(frozen=True)
class Verdict:
    """The best arm of one metric, its comparison with the runner-up, and the arms that could not compete."""

    metric: str
    mode: str  # "min" or "max"
    best: ArmResult | None
    comparison: Comparison | None
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (arm's short name, why)

    @property
    def tie(self) -> bool:
        return self.standing == "tie"

    @property
    def standing(self) -> str:
        """ "distinguishable", "tie", "untested" (one seed), "only arm", or "none" (no arm in the running)."""
        if self.best is None:
            return "none"
        if self.comparison is None:
            return "only arm"
        if self.comparison.p_value is None:
            return "untested"
        return "distinguishable" if self.comparison.distinguishable else "tie"

    @property
    def why_none(self) -> str:
        """Why no arm is best (when none is): every arm diverged, none has a value of the metric, or both."""
        diverged = sum("diverged" in why for _, why in self.excluded)
        if not self.excluded:
            return "no run has finished yet"
        if diverged == len(self.excluded):
            return "none finished without diverging"
        if diverged == 0:
            return "no run has a finite value of it"
        return "every arm diverged or has no finite value of it"

    def headline(self) -> str:
        """The answer in a few words: ``l2=10 is best on val/loss, a tie with l2=3``."""
        if self.best is None:
            return f"no arm is best on {self.metric}: {self.why_none}"
        line = f"{self.best.name} is best on {self.metric}"
        if self.comparison is not None and self.standing in ("tie", "distinguishable"):
            runner_up = self.comparison.runner_up.name
            line += f", a tie with {runner_up}" if self.tie else f", ahead of {runner_up} over seeds"
        return line

    def text(self) -> str:
        goal = "highest" if self.mode == "max" else "lowest"
        if self.best is None:
            return f"`{self.metric}`: {self.why_none}, so none is best."
        digits = 4  # more where the two means would print alike: a paired test can separate arms 0.1% apart
        if self.comparison is not None:
            means = self.best.mean, self.comparison.runner_up.mean
            while digits < 8 and means[0] != means[1] and f"{means[0]:.{digits}g}" == f"{means[1]:.{digits}g}":
                digits += 1
        line = f"`{self.metric}` ({goal} is best): **{self.best.name}**, {self.best.summary(digits)}"
        if self.comparison is not None:
            line += f"; {self.comparison.text(digits)}"
        if self.excluded:
            named = ", ".join(f"{arm} ({why})" for arm, why in self.excluded[:SHOWN_OUT])
            more = len(self.excluded) - SHOWN_OUT
            line += f"; out of the running: {named}" + (f" and {more} more (see the table)" if more > 0 else "")
        return line + "."


def arm_results(kept: list[Child], metric: str, mode: str) -> tuple[list[ArmResult], list[tuple[str, str]]]:
    """The arms whose every run (``kept``: one FINISHED run per arm × seed) has a finite ``metric``, best first by
    the mean over seeds (``mode`` "min" or "max"), and the others with the reason they are out of the running."""
    by_arm: dict[str, list[Child]] = defaultdict(list)
    for child in kept:
        by_arm[child.arm].append(child)
    ranked: list[ArmResult] = []
    excluded: list[tuple[str, str, str]] = []  # (arm, its short name, why)
    for arm, runs in by_arm.items():
        diverged = sum(c.outcome == "diverged" for c in runs)
        missing = [c.seed for c in runs if c.outcome != "diverged" and not finite(c.metrics.get(metric))]
        if diverged:
            excluded.append((arm, arm_name(runs[0]), f"{diverged} seed(s) diverged"))
        elif missing:
            unlogged = all(metric not in c.metrics for c in runs if c.seed in missing)
            why = "did not log it on seed" if unlogged else "no finite value on seed"
            excluded.append((arm, arm_name(runs[0]), f"{why} {', '.join(map(str, sorted(missing)))}"))
        else:
            ranked.append(ArmResult(arm, metric, tuple(sorted(runs, key=lambda c: c.seed))))
    sign = 1.0 if mode == "min" else -1.0
    ranked.sort(key=lambda r: (sign * r.mean, arm_sort_key(r.arm)))
    return ranked, [(name, why) for _, name, why in sorted(excluded, key=lambda item: arm_sort_key(item[0]))]


def verdict(kept: list[Child], metric: str, mode: str | None = None) -> Verdict:
    """The verdict on ``metric`` over a sweep's runs (one FINISHED run per arm × seed); ``mode`` defaults to the
    metric's :func:`goal`."""
    mode = mode or goal(metric) or "min"
    ranked, excluded = arm_results(kept, metric, mode)
    if not ranked:
        return Verdict(metric, mode, None, None, excluded)
    comparison = compare(ranked[0], ranked[1]) if len(ranked) > 1 else None
    return Verdict(metric, mode, ranked[0], comparison, excluded)


def groups_arms(kept: list[Child], key: str) -> bool:
    """Whether ``key`` splits the arms into groups worth a best each: every arm sets it, to one of several values,
    and some value is held by several arms (not, say, a key that one listed arm alone sets)."""
    arms = {child.arm: settings(child) for child in kept}
    if not all(key in arm for arm in arms.values()):
        return False
    return 1 < len({label(arm[key]) for arm in arms.values()}) < len(arms)


def verdicts_per_group(kept: list[Child], metric: str, key: str, mode: str | None = None) -> list[tuple[str, Verdict]]:
    """With several keys swept: for each value of ``key``, the verdict among the arms holding that value."""
    groups: dict[str, list[Child]] = defaultdict(list)
    values: dict[str, Any] = {}
    for child in kept:
        arm = settings(child)
        if key in arm:
            text = label(arm[key])
            groups[text].append(child)
            values[text] = arm[key]
    order = sorted(groups, key=lambda text: sortable(values[text]))
    return [(f"{short(key)}={text}", verdict(groups[text], metric, mode)) for text in order]


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


#: Said of a spec's metric that no run logged (the ablate command prints these lines too).
UNLOGGED = (
    "no run logged this metric (check its name in the spec's `metrics:`; a `val/` metric is logged only by a "
    "validation, which runs every `trainer.check_val_every_n_epoch` epochs; `lit-d2l report SWEEP --metrics NAME` "
    "ranks on another, without training again)"
)


def primary_metric(metrics: list[str]) -> str | None:
    """The metric a sweep is judged by: its first validation metric with a known :func:`goal`, else its first
    metric with one."""
    judged = [metric for metric in metrics if goal(metric) is not None]
    return next((metric for metric in judged if metric.startswith("val/")), judged[0] if judged else None)


@dataclass(frozen=True)
class SweepVerdict:
    """What a sweep found: its description, a verdict per metric with a known goal, and the best per group."""

    description: str
    verdicts: list[Verdict]
    groups: list[tuple[str, Verdict]]  # per value of the first swept key, when several are swept
    unlogged: list[str] = field(default_factory=list)  # the spec's metrics no run logged (a misspelt name)
    logged: list[str] = field(default_factory=list)  # what the runs did log
    not_final: str = ""  # why it may still change: runs of the sweep that have not finished (see runs_left)
    at_edge: str = ""  # the best arm's value, where it is the largest or smallest one swept: the optimum may lie beyond

    @property
    def primary(self) -> Verdict | None:
        return self.verdicts[0] if self.verdicts else None

    def markdown(self) -> str:
        """The verdict as the parent run's description and the report's first section."""
        # The answer in the heading: MLflow's Overview shows a run description's first lines only.
        lines = [f"## {self.headline()}", ""]
        if self.not_final:
            lines += [f"**{self.not_final}**", ""]
        if self.description:  # the spec's words, written before any run: what to check the results against
            lines += [f"Expected (the spec's description): {self.description.strip()}", ""]
        lines += [f"- {v.text()}" for v in self.verdicts] or ["- No metric of this sweep says which way is better."]
        if self.at_edge:
            lines += ["", self.at_edge]
        if self.groups:
            primary = self.verdicts[0].metric
            lines += ["", f"Best `{primary}` per group:", ""]
            lines += [f"- {group}: {v.text().split(': ', 1)[-1]}" for group, v in self.groups]
        if self.unlogged:
            lines += ["", *(f"- {line}" for line in self._unlogged_lines())]
        lines += [
            "",
            f"Mean ± std over seeds (the population std); tested with {ALPHA:.0%} significance over seeds (a paired "
            "t-test); a tie means the seeds cannot tell the arms apart.",
        ]
        return "\n".join(lines) + "\n"

    def headline(self) -> str:
        """``Verdict: l2=1 is best on val/loss, ...``: the report's heading and the first line ``ablate`` prints."""
        return f"Verdict: {self.primary.headline()}" if self.primary else "Verdict"

    def terminal_lines(self) -> list[str]:
        """What ``ablate`` prints of the verdict: its headline; why, where seeds tested the best arm against the
        runner-up (both means and the test's p-value); each other validation metric whose best arm differs; and
        each metric no run logged."""
        primary = self.primary
        tested = primary is not None and primary.standing in ("tie", "distinguishable")
        why = [primary.text()] if tested else []
        if tested and primary.tie:
            why.append(f"A tie: p >= {ALPHA:.0%}, so these seeds cannot tell the two apart (more seeds may).")
        best = primary.best.name if primary is not None and primary.best is not None else None
        why += [self.at_edge] if self.at_edge else []
        why += [
            f"{v.headline()} (where {best} is best on {primary.metric}; the report has every metric's verdict)."
            for v in self.verdicts[1:]
            if best is not None and v.metric.startswith("val/") and v.best is not None and v.best.name != best
        ]
        return [self.headline(), *(line.replace("`", "").replace("**", "") for line in [*why, *self._unlogged_lines()])]

    def _unlogged_lines(self) -> list[str]:
        return [f"`{m}`: {UNLOGGED}; they logged {first_names(self.logged, '`')}." for m in self.unlogged]

    def best_metrics(self) -> dict[str, float]:
        """``best/<metric>``: the best arm's mean, for the parent's row in MLflow's runs table."""
        return {f"best/{v.metric}": v.best.mean for v in self.verdicts if v.best is not None}

    def tags(self) -> dict[str, str]:
        """The verdict as MLflow's run description (``mlflow.note.content``); the primary metric's winning arm, and
        each metric's (``lit_d2l.best_arm/val/loss``: the arm whose mean is ``best/val/loss``)."""
        tags = {"mlflow.note.content": self.markdown()}
        tags |= {f"lit_d2l.best_arm/{v.metric}": v.best.name for v in self.verdicts if v.best is not None}
        primary = self.primary
        if primary is not None and primary.best is not None:
            tags["lit_d2l.best_arm"] = primary.best.name
            tags["lit_d2l.verdict"] = primary.standing
        return tags


def sweep_verdict(kept: list[Child], metrics: list[str], axes: list[str], description: str = "") -> SweepVerdict:
    """The verdict of a sweep from its runs (one FINISHED run per arm × seed), its metrics and swept keys."""
    primary = primary_metric(metrics)
    logged = sorted({key for child in kept for key in child.metrics})
    # With a penalty on in some arms, train/loss_epoch is J = L + penalty, which differs by λ: not ranked across arms.
    unranked = {"train/loss_epoch"} if "train/loss_data" in logged else set()
    judged = [m for m in metrics if m != primary and goal(m) is not None and m not in unranked]
    judged = [primary, *judged] if primary else []
    key = next((key for key in axes if groups_arms(kept, key)), None) if primary and len(axes) > 1 else None
    groups = verdicts_per_group(kept, primary, key) if primary and key else []
    unlogged = [metric for metric in metrics if kept and metric not in logged]
    verdicts = [verdict(kept, metric) for metric in judged]
    edge = at_edge(verdicts[0].best, kept, axes[0]) if verdicts and verdicts[0].best and len(axes) == 1 else ""
    return SweepVerdict(description, verdicts, groups, unlogged, logged, at_edge=edge)


def at_edge(best: ArmResult, kept: list[Child], key: str) -> str:
    """Where the best arm of a sweep of one numeric key (3 values or more) has its largest or smallest value: the
    best value may lie beyond the range tried (D2L 3.6: a grid's edge is no optimum)."""
    values = [settings(child).get(key) for child in kept]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):  # e.g. lists of widths
        return ""
    numbers, mine = sorted(set(values)), settings(best.runs[0]).get(key)
    if len(numbers) < 3 or mine not in (numbers[0], numbers[-1]):
        return ""
    end, beyond = ("largest", "larger") if mine == numbers[-1] else ("smallest", "smaller")
    return f"{best.name} is the {end} value tried: a {beyond} one may do better (sweep beyond it)."


def first_names(names: list[str], quote: str = "") -> str:
    """The first 12 of ``names``, comma-separated (each between ``quote``), ``...`` for the rest."""
    return ", ".join(f"{quote}{n}{quote}" for n in names[:12]) + (", ..." if len(names) > 12 else "")
