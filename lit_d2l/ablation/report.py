"""``lit-d2l report SWEEP``: a markdown table (mean ± std over seeds per arm) and plots, from MLflow alone.

Plots: the final train and validation metric along each swept axis (one line per setting of the
other axes: the train/validation gap at a glance), the loss curve of every arm, and, when the
sweep logged diagnostics, per-layer gradient norms at the first step.

Figures are plain :class:`~matplotlib.figure.Figure` objects, outside pyplot: writing a PNG needs no
backend switch, and a figure is freed when it goes out of scope.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from lit_d2l.ablation.spec import canonical
from lit_d2l.errors import UserError
from lit_d2l.tracking.sweeps import Child, SweepStore

#: What each standard metric is, printed under the table so J and L are never mistaken for each other.
METRIC_MEANINGS = {
    "train/loss_epoch": "J = L + λ/2·Σ‖W‖², the objective SGD minimises, on the training set (epoch mean)",
    "train/loss_data": "L alone on the training set (epoch mean): compare this one with val/loss",
    "val/loss": "L on the validation set",
    "test/loss": "L on the test set",
}


def summary_table(children: list[Child], metrics: list[str]) -> str:
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
    header = ["arm", "seeds", "diverged", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for arm in sorted(by_arm, key=_arm_sort_key):
        runs = by_arm[arm]
        diverged = [c for c in runs if c.outcome == "diverged"]
        cells = [arm, str(len(runs)), _diverged_cell(diverged)]
        for metric in metrics:
            values = [c.metrics[metric] for c in runs if c.outcome != "diverged" and metric in c.metrics]
            cells.append(_mean_std(values))
        lines.append("| " + " | ".join(cells) + " |")
    legend = [f"- `{metric}`: {METRIC_MEANINGS[metric]}" for metric in metrics if metric in METRIC_MEANINGS]
    if penalised or len(legend) > 1:
        lines += ["", *legend]
    if duplicates:
        lines += [
            "",
            f"{duplicates} duplicate FINISHED run(s) of an arm × seed ignored (the earliest-started one counts).",
        ]
    return "\n".join(lines) + "\n"


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


def build_report(sweep: str, out_dir: Path | None = None, tracking_uri: str | None = None) -> Path:
    """Write ``report.md`` and PNGs for a sweep (its id or parent run id) and log them on the parent run."""
    store = SweepStore(tracking_uri)
    parent = store.resolve_parent(sweep)
    params = parent.data.params
    metrics: list[str] = json.loads(params.get("sweep.metrics", '["val/loss"]'))
    axes: list[str] = json.loads(params.get("sweep.axes", "[]"))
    sweep_id = parent.data.tags.get("lit_d2l.sweep_id", parent.info.run_id)
    out_dir = Path(out_dir) if out_dir is not None else report_dir(Path("reports"), sweep_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    children = store.children(parent)
    finished, _ = one_run_per_pair(children)

    sections = [f"# Sweep {sweep_id}", "", f"Parent run `{parent.info.run_id}`; {len(finished)} finished runs.", ""]
    sections += [summary_table(children, metrics)]
    stability = {k: v for k, v in parent.data.metrics.items() if k.startswith("stability/")}
    if stability:
        sections += ["## Numerical stability (D2L 5.4)", "", "| quantity | value |", "| --- | --- |"]
        sections += [f"| {k.removeprefix('stability/')} | {v:.3g} |" for k, v in sorted(stability.items())] + [""]
    for axis in axes:
        path = _plot_along_axis(finished, axis, metrics, out_dir)
        if path:
            sections += [f"![{metrics} along {axis}]({path.name})", ""]
    curves = _plot_curves(store, finished, metrics[-1], out_dir)
    if curves:
        sections += [f"![loss curves]({curves.name})", ""]
    grads = _plot_grad_norms(store, finished, out_dir)
    if grads:
        sections += [f"![gradient norms per layer]({grads.name})", ""]
    (out_dir / "report.md").write_text("\n".join(sections))
    store.log_folder(parent.info.run_id, out_dir, "report")
    return out_dir / "report.md"


def report_dir(root: Path, sweep_id: str) -> Path:
    """``root/<sweep id>``, with the id made a plain folder name: the store's tag never leads outside ``root``."""
    folder = re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_id).lstrip(".") or "sweep"
    path = root / folder
    if path.parent.resolve() != root.resolve():
        raise UserError(f"report folder {path} would be outside {root}; give --out")
    return path


def group_along_axis(children: list[Child], axis: str, metrics: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """For each setting of the other swept keys (a label), the values of ``axis`` in order, each with its
    ``{label: value_text, metric: [values over seeds]}``. Values of any JSON type group by their canonical text.
    """
    points: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    others: dict[str, list[tuple[str, Any]]] = {}
    values: dict[str, Any] = {}
    for child in children:
        if child.outcome == "diverged":
            continue
        settings = _settings(child)
        if axis not in settings:
            continue
        rest = [(k, v) for k, v in settings.items() if k != axis]
        group, x = canonical(rest), canonical(settings[axis])
        others[group], values[x] = rest, settings[axis]
        for metric in metrics:
            if metric in child.metrics:
                points[group][x][metric].append(child.metrics[metric])
    result = []
    for group in sorted(points, key=lambda g: tuple(_sortable(v) for _, v in others[g])):
        label = ",".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in others[group])
        xs = sorted(points[group], key=lambda x: _sortable(values[x]))
        result.append((label, {_label(values[x]): points[group][x] for x in xs}))
    return result


def _plot_along_axis(children: list[Child], axis: str, metrics: list[str], out_dir: Path) -> Path | None:
    """Each metric against ``axis``, one line per setting of every other swept key (seeds averaged)."""
    ordered = group_along_axis(children, axis, metrics)
    if not ordered:
        return None
    # Up to 6 settings share one panel (colour = setting, line style = metric); more get a panel each.
    panels = [ordered] if len(ordered) <= 6 else [[item] for item in ordered]
    columns = min(len(panels), 5)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(7 if columns == 1 else 3.2 * columns, 4.5 if rows == 1 else 2.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        for index, (setting, by_value) in enumerate(panel):
            xs = list(by_value)
            for style, metric in zip(["--", "-", ":", "-."], metrics, strict=False):
                ys = [statistics.fmean(by_value[x][metric]) if by_value[x][metric] else math.nan for x in xs]
                label = metric if len(panels) > 1 else f"{metric} {setting}"
                ax.plot(xs, ys, style, marker="o", color=colors[index % len(colors)], label=label)
        if len(panels) > 1:
            ax.set_title(setting, fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel(axis, fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=6 if len(panels) > 1 else 7, ncol=1 if len(panels) > 1 else 2)
    fig.suptitle(f"final metrics along {axis} (mean over seeds; diverged runs left out)")
    return _save(fig, out_dir / f"along_{re.sub(r'[^A-Za-z0-9_-]', '_', axis)}.png")


def _first_seed_runs(children: list[Child]) -> list[Child]:
    """The run of each arm with the lowest seed, in arm order."""
    first: dict[str, Child] = {}
    for child in sorted(children, key=lambda c: c.seed):
        first.setdefault(child.arm, child)
    return [first[arm] for arm in sorted(first, key=_arm_sort_key)]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _plot_curves(store: SweepStore, children: list[Child], metric: str, out_dir: Path) -> Path | None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    drawn = 0
    for child in _first_seed_runs(children):
        history = store.history(child.run_id, metric)
        if history:
            ax.plot(
                [s for s, _ in history],
                [max(v, 1e-12) if math.isfinite(v) else math.nan for _, v in history],
                label=child.arm,
            )
            drawn += 1
    if not drawn:
        return None
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per arm (first seed)")
    if drawn <= 16:
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir / "curves.png")


def _plot_grad_norms(store: SweepStore, children: list[Child], out_dir: Path) -> Path | None:
    """Gradient norm per layer at step 0, one panel per value of the arms' first setting (e.g. the init)."""
    with_norms = [c for c in children if any(key.startswith("grad_norm/") for key in c.metrics)]
    if not with_norms:
        return None
    panels: dict[str, list[Child]] = defaultdict(list)
    for child in _first_seed_runs(with_norms):
        panels[child.arm.split(";")[0]].append(child)
    fig = Figure(figsize=(4.5 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)
    for ax, (title, members) in zip(axes[0], panels.items(), strict=True):
        for child in members:
            layers = sorted((k for k in child.metrics if k.startswith("grad_norm/")), key=_natural_order)
            at_start = [store.history(child.run_id, key)[0][1] for key in layers]
            label = child.arm.removeprefix(title).lstrip(";") or child.arm
            ax.plot(range(len(layers)), [max(v, 1e-30) for v in at_start], marker=".", label=label)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer (input → output)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5)
    axes[0][0].set_ylabel("‖∂L/∂W‖ at step 0")
    fig.suptitle("per-layer gradient norm at initialisation")
    return _save(fig, out_dir / "grad_norms.png")


def _settings(child: Child) -> dict[str, Any]:
    return json.loads(child.tags.get("arm_settings", "{}"))


def _sortable(value: Any) -> tuple:
    """Numbers numerically, then text, then lists (shorter first, then element by element), then mappings."""
    if isinstance(value, (int, float)):
        return (0, value, "", ())
    if isinstance(value, list):
        return (2, len(value), "", tuple(_sortable(v) for v in value))
    if isinstance(value, dict):
        return (3, 0, canonical(value), ())
    return (1, 0, str(value), ())


def _label(value: Any) -> str:
    """A value as the arm key shows it: ``0.01``, ``relu``, ``[16, 16]``."""
    return value if isinstance(value, str) else canonical(value)


def _arm_sort_key(arm: str) -> tuple:
    """Order arm keys ``a=1;b=10`` by their values, numbers numerically."""
    values = []
    for part in arm.split(";"):
        text = part.split("=", 1)[-1]
        try:
            values.append(_sortable(json.loads(text)))
        except ValueError:
            values.append(_sortable(text))
    return tuple(values)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.pstdev(values):.2g}"


def _diverged_cell(diverged: list[Child]) -> str:
    if not diverged:
        return "0"
    steps = sorted(int(c.tags.get("diverged_at_step", -1)) for c in diverged)
    return f"{len(diverged)} (step {', '.join(map(str, steps))})"


def _natural_order(name: str) -> list[int | str]:
    """``net.3.weight`` before ``net.11.weight``: digits compare as numbers (layers in forward order)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
