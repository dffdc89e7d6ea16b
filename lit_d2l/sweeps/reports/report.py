"""``lit-d2l report SWEEP``: the verdict, the summary table (mean ± std over seeds per arm) and the figures, from
MLflow alone.

Written as ``report.md`` (table, figure files beside it) and ``report.html`` (the same, figures embedded,
for MLflow's artifact viewer). Figures (see :mod:`lit_d2l.sweeps.reports.figures`): the final metrics along each
swept axis, the loss curves of every arm, per-layer gradient norms at step 0 when the sweep logged
diagnostics, and the memory figure when it swept depth.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lit_d2l.errors import UserError
from lit_d2l.sweeps.arm_values import arm_name, arm_sort_key
from lit_d2l.sweeps.reports import figures
from lit_d2l.sweeps.reports.html import html_report
from lit_d2l.sweeps.reports.memory_figure import memory_figure
from lit_d2l.sweeps.reports.verdict import (
    SweepVerdict,
    arm_results,
    first_names,
    goal,
    primary_metric,
    sweep_verdict,
)
from lit_d2l.tracking.sweeps import Child, SweepStore

if TYPE_CHECKING:
    from mlflow.entities import Run

SYMMETRY = "distinct_units"
#: What each standard metric is, printed under the table so J and L are never mistaken for each other.
METRIC_MEANINGS = {
    "train/loss_epoch": "J = L + λ/2·Σ‖W‖², the objective SGD minimises, on the training set (epoch mean; the verdict "
    "does not rank it where arms differ in λ)",
    "train/loss_data": "L alone on the training set (epoch mean; where λ = 0, J, which is L there): compare this one "
    "with val/loss",
    "val/loss": "L on the validation set",
    "test/loss": "L on the test set",
    SYMMETRY: "distinct hidden units of the most symmetric hidden layer at the end of training (fewest – most over "
    "seeds; every layer's count in the run's diagnostics/distinct_units.json): 1 means every unit of a layer is the "
    "same (symmetry, D2L 5.4.3)",
}


@dataclass
class Summary:
    """The summary table's cells, the meaning of each metric shown, and notes below it."""

    header: list[str]
    rows: list[list[str]]
    legend: list[tuple[str, str]]
    notes: list[str]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + " --- |" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.legend:
            lines += ["", *(f"- `{metric}`: {meaning}" for metric, meaning in self.legend)]
        for note in self.notes:
            lines += ["", note]
        return "\n".join(lines) + "\n"


def summary_table(children: list[Child], metrics: list[str]) -> str:
    """The summary as a markdown table (see :func:`summarise`)."""
    return summarise(children, metrics).markdown()


def summarise(children: list[Child], metrics: list[str]) -> Summary:
    """One row per arm: runs finished, diverged, and mean ± std over seeds of each metric.

    When runs logged ``train/loss_data`` (a penalty was on), it is shown beside ``train/loss_epoch``
    (J), and a legend says which loss is which.
    """
    kept, duplicates = one_run_per_pair(children)
    by_arm: dict[str, list[Child]] = defaultdict(list)
    for child in kept:
        by_arm[child.arm].append(child)
    penalised = any("train/loss_data" in c.metrics for runs in by_arm.values() for c in runs)
    if penalised and "train/loss_epoch" in metrics and "train/loss_data" not in metrics:
        at = metrics.index("train/loss_epoch") + 1
        metrics = [*metrics[:at], "train/loss_data", *metrics[at:]]
    symmetry = any(k.startswith(f"{SYMMETRY}/") for runs in by_arm.values() for c in runs for k in c.metrics)
    order = sorted(by_arm, key=arm_sort_key)
    primary = primary_metric(metrics)
    best: str | None = None
    if primary is not None:  # best first by the verdict's metric, then the arms out of the running
        ranked, _ = arm_results(kept, primary, goal(primary) or "min")
        best = ranked[0].arm if ranked else None
        order = [r.arm for r in ranked] + [arm for arm in order if arm not in {r.arm for r in ranked}]
    rows = []
    for arm in order:
        runs = by_arm[arm]
        diverged = [c for c in runs if c.outcome == "diverged"]
        cells = [arm_name(runs[0]), str(len(runs)), _diverged_cell(diverged)]
        for metric in metrics:
            stored = [(c, figures.stored_as(c, metric)) for c in runs if c.outcome != "diverged"]
            values = [c.metrics[key] for c, key in stored if key in c.metrics]
            cells.append(_mean_std(values))
        if symmetry:
            cells.append(_range([v for c in runs for k, v in c.metrics.items() if k.startswith(f"{SYMMETRY}/")]))
        rows.append(cells)
    metrics = [*metrics, SYMMETRY] if symmetry else metrics
    legend = [(metric, METRIC_MEANINGS[metric]) for metric in metrics if metric in METRIC_MEANINGS]
    notes = []
    if duplicates:
        notes.append(
            f"{duplicates} duplicate FINISHED run(s) of an arm × seed ignored (the earliest-started one counts)."
        )
    if best is not None:
        notes.append(f"Sorted by `{primary}`, best first; the best arm is marked ★.")
        rows[0][0] = f"★ {rows[0][0]}"
    return Summary(["arm", "seeds", "diverged", *metrics], rows, legend if penalised or len(legend) > 1 else [], notes)


def one_run_per_pair(children: list[Child]) -> tuple[list[Child], int]:
    """One FINISHED child per arm × seed (the earliest-started), and how many duplicates were left out.

    Two processes resuming one sweep at once can both finish a pair; counting both would weigh
    that seed twice in the mean and report more seeds than the spec has.
    """
    finished = sorted((c for c in children if c.status == "FINISHED"), key=lambda c: (c.start_time, c.run_id))
    kept: dict[tuple[str, int], Child] = {}
    for child in finished:
        kept.setdefault((child.arm, child.seed), child)
    return list(kept.values()), len(finished) - len(kept)


def runs_left(parent: Run, finished: int) -> str:
    """Why a sweep's verdict may still change (its spec's arm × seed runs that have not finished), or ""."""
    params = parent.data.params
    expected = int(params.get("sweep.arms", 0)) * len(json.loads(params.get("sweep.seeds", "[]")))
    if finished >= expected:
        return ""
    why = "the sweep is still running" if parent.info.status == "RUNNING" else "run its lit-d2l ablate again for them"
    return f"Not final: {finished} of {expected} runs have finished ({why})"


def check_logged(sweep: str, tracking_uri: str | None, names: dict[str, list[str]]) -> None:
    """Refuse, before a report is written, a metric given on the command line (``{option: [names]}``) that no
    finished run of the sweep logged: a misspelt name is one line with the name it most likely meant."""
    store = SweepStore(tracking_uri)
    finished, _ = one_run_per_pair(store.children(store.resolve_parent(sweep)))
    logged = sorted({key for child in finished for key in child.metrics})
    for option, name in ((option, name) for option, given in names.items() for name in given):
        if finished and name not in logged:  # no finished run yet: nothing to tell a misspelling by
            raise UserError(f"{option} {name}: no finished run of this sweep logged it; {did_you_mean(name, logged)}")


def did_you_mean(name: str, logged: list[str], who: str = "they") -> str:
    """``did you mean val/loss?`` (the logged name closest to ``name``), or what ``who`` logged."""
    close = difflib.get_close_matches(name, logged, n=1)
    return f"did you mean {close[0]}?" if close else f"{who} logged {first_names(logged)}."


class Report(NamedTuple):
    """A written report: its markdown file and the verdict at its top."""

    path: Path
    verdict: SweepVerdict
    recorded: bool = True  # on the parent run; False for a view on other metrics than the spec's


def build_report(
    sweep: str, out_dir: Path | None = None, tracking_uri: str | None = None, metrics: list[str] | None = None
) -> Report:
    """Write ``report.md``, ``report.html`` (figures embedded) and the PNGs for a sweep (its id or parent
    run id), and record them on the parent run (its description, ``best/*`` metrics and tags, ``report/``); returns
    the markdown file and the verdict.

    ``metrics`` other than the spec's (say, one it misspelt) rank the runs on those, without training again: a
    view, written to ``reports/<sweep id>-by-<metrics>`` unless ``out_dir`` is given, and not recorded (the parent
    keeps the verdict on its spec's metrics)."""
    store = SweepStore(tracking_uri)
    parent = store.resolve_parent(sweep)
    params = parent.data.params
    spec_metrics = json.loads(params.get("sweep.metrics", '["val/loss"]'))
    metrics = metrics or spec_metrics
    recorded = metrics == spec_metrics
    axes: list[str] = json.loads(params.get("sweep.axes", "[]"))
    sweep_id = parent.data.tags.get("lit_d2l.sweep_id", parent.info.run_id)
    folder = sweep_id if recorded else f"{sweep_id}-by-{'-'.join(metrics)}"
    out_dir = Path(out_dir) if out_dir is not None else report_dir(Path("reports"), folder)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write there ({exc.strerror or exc}); give another folder") from None
    children = store.children(parent)
    finished, _ = one_run_per_pair(children)

    diverged = sum(c.outcome == "diverged" for c in finished)
    counts = f"{len(finished) - diverged} finished, {diverged} diverged" if diverged else f"{len(finished)} finished"
    title, intro = f"Sweep {sweep_id}", f"Parent run {parent.info.run_id}; {counts}.{trained_with(finished)}"
    found = sweep_verdict(finished, metrics, axes, params.get("sweep.description", ""))
    left = runs_left(parent, len(finished))
    found = dataclasses.replace(found, not_final=f"{left}; this verdict may change." if left else "")
    if recorded:
        store.record(parent.info.run_id, found.best_metrics(), found.tags(), (found.markdown(), "verdict.md"))
    summary = summarise(children, metrics)
    stability = [
        (key.removeprefix("stability/"), f"{value:.3g}")
        for key, value in sorted(parent.data.metrics.items())
        if key.startswith("stability/")
    ]
    along = ", ".join(figures.plotted(finished, metrics))  # as the figure draws them: its caption, its alt text
    drawn = [(f"Final {along} along {axis}", figures.along_axis_figure(finished, axis, metrics),
              figures.file_name(axis)) for axis in axes]  # fmt: skip
    drawn += [
        ("Loss curves per arm", figures.curves_figure(finished, store.history), "curves.png"),
        (
            "Gradient norm per layer at step 0",
            figures.grad_norms_figure(finished, functools.partial(figures.layer_table, store)),
            "grad_norms.png",
        ),
        ("Memory saved for backward, by depth and batch size", memory_figure(finished), "memory.png"),
    ]
    saved = [(caption, figures.save(fig, out_dir / name)) for caption, fig, name in drawn if fig is not None]

    sections = [f"# {title}", "", found.markdown(), intro.replace(parent.info.run_id, f"`{parent.info.run_id}`"), ""]
    sections += [summary.markdown()]
    if stability:
        sections += ["## Numerical stability (D2L 5.4)", "", "| quantity | value |", "| --- | --- |"]
        sections += [f"| {key} | {value} |" for key, value in stability] + [""]
    sections += [f"![{caption}]({path.name})\n" for caption, path in saved]
    sections += ["The same report with the figures embedded: report.html (opens in MLflow's artifact viewer).", ""]
    (out_dir / "report.md").write_text("\n".join(sections))
    table = (summary.header, summary.rows)
    page = html_report(title, found.markdown(), intro, table, summary.legend, summary.notes, stability, saved)
    (out_dir / "report.html").write_text(page)
    if recorded:
        store.client.log_artifacts(parent.info.run_id, str(out_dir), "report")
    return Report(out_dir / "report.md", found, recorded)


def trained_with(finished: list[Child]) -> str:
    """What the arms trained, as their runs record it: model, optimizer, schedule, epochs; where the arms differ in
    one, its values in their order (``MLP or LeNet (by arm)``)."""

    def said(param: str, unset: str, alone: str = "", unit: str = "") -> str:
        values = list(dict.fromkeys(c.params.get(param, "None").rsplit(".", 1)[-1] for c in finished))
        values = [value if value != "None" else "" for value in values]
        if len(values) == 1:
            return f"{values[0]}{unit}" if values[0] else alone
        return " or ".join(value or unset for value in values) + f"{unit} (by arm)"

    if not finished:
        return ""
    own_sgd = "the model's own SGD"
    parts = [said("model.class_path", "?"), said("optimizer.class_path", own_sgd, own_sgd)]
    parts += [said("lr_scheduler.class_path", "no schedule"), said("trainer.max_epochs", "?", unit=" epochs")]
    return f" Trained: {', '.join(part for part in parts if part)} (as the runs record it)."


def report_dir(root: Path, sweep_id: str) -> Path:
    """``root/<sweep id>``, with the id made a plain folder name: the store's tag never leads outside ``root``."""
    folder = re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_id).lstrip(".") or "sweep"
    path = root / folder
    if path.parent.resolve() != root.resolve():
        raise UserError(f"report folder {path} would be outside {root}; give --out")
    return path


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.pstdev(values):.2g}"


def _range(values: list[float]) -> str:
    if not values:
        return "–"
    low, high = int(min(values)), int(max(values))
    return str(low) if low == high else f"{low} – {high}"


def _diverged_cell(diverged: list[Child]) -> str:
    if not diverged:
        return "0"
    steps = sorted(int(c.tags.get("diverged_at_step", -1)) for c in diverged)
    return f"{len(diverged)} (step {', '.join(map(str, steps))})"
