"""Report figures on synthetic runs: non-finite values (±1.8e308, NaN, inf) beside 1e-13..1e7, panels per
metric, loss curves of losses only, colour keys that stay readable at 45 and 50 arms."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lit_d2l.sweeps.reports.figure_axes import scale_for
from lit_d2l.sweeps.reports.figures import along_axis_figure, curves_figure, grad_norms_figure, save
from lit_d2l.sweeps.spec import canonical
from lit_d2l.tracking.sweeps import Child

INF = 1.7976931348623157e308  # what MLflow stores for +inf


def run(settings: dict, seed: int, metrics: dict[str, float], diverged_at: int | None = None) -> Child:
    arm = ";".join(f"{k}={v if isinstance(v, str) else canonical(v)}" for k, v in settings.items())
    tags = {"arm_settings": json.dumps(settings)}
    if diverged_at is not None:
        tags["diverged_at_step"] = str(diverged_at)
    return Child(
        run_id=f"{arm}/{seed}",
        arm=arm,
        seed=seed,
        status="FINISHED",
        outcome="finished" if diverged_at is None else "diverged",
        metrics=metrics,
        tags=tags,
    )


class FakeHistory(dict):
    """``history(run_id, key)`` from a dict of ``{(run_id, key): [(step, value), ...]}``."""

    def __call__(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return self.get((run_id, key), [])


def data_lines(ax: Axes) -> list:
    """The lines drawn in data coordinates (edge marks use the x-axis transform)."""
    return [line for line in ax.lines if line.get_transform() is ax.transData]


def edge_marks(fig: Figure) -> int:
    return sum(len(ax.lines) - len(data_lines(ax)) for ax in fig.axes)


def finite_values_inside(fig: Figure) -> list[float]:
    """Every panel's limits are finite and hold each finite value drawn; returns the values drawn."""
    drawn = []
    for ax in fig.axes:
        if not ax.lines:
            continue
        lo, hi = ax.get_ylim()
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi, (ax.get_title(), lo, hi)
        assert ax.get_yscale() == "linear" or lo > 0
        for line in data_lines(ax):
            ys = [float(y) for y in line.get_ydata() if math.isfinite(y)]
            assert all(lo <= y <= hi for y in ys), (ax.get_ylabel(), lo, hi, ys)
            drawn += ys
    return drawn


def rendered(fig: Figure | None, tmp_path: Path, name: str) -> Figure:
    """Draw the figure to a PNG with every warning an error (matplotlib warns at draw time too)."""
    assert fig is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(fig, tmp_path / name)
    return fig


#: Two inits × two depths, seeds 0 and 1: one arm explodes (±inf, NaN), one vanishes (1e-13), one grows to 1e7.
ARMS = [{"model.init": init, "model.depth": depth} for init in ("normal", "xavier") for depth in (2, 10)]


def wild_runs() -> tuple[list[Child], FakeHistory]:
    history = FakeHistory()
    children = []
    tables = history.tables = {}
    finals = {
        (0, 0): {"train/loss_epoch": 1e-13, "val/loss": 2.0, "val/acc": 0.1},
        (0, 1): {"train/loss_epoch": INF, "val/loss": math.nan, "val/acc": 0.1},
        (1, 0): {"train/loss_epoch": 1e7, "val/loss": -INF, "val/acc": 0.9},
        (1, 1): {"train/loss_epoch": 0.5, "val/loss": 0.7, "val/acc": 0.8},
    }
    for index, settings in enumerate(ARMS):
        for seed in (0, 1):
            metrics = dict(finals[index % 2, seed])
            diverged = index == 1 and seed == 0
            child = run(settings, seed, metrics, diverged_at=60 if diverged else None)
            grads = [1e-13, 3e-7, 1e7] if index == 0 else [INF, math.nan, float("inf")] if diverged else [0.0, 1.0, 2.0]
            child.metrics["grad_norm/min"] = min(grads)
            tables[child.run_id] = [  # step 20 first: the figure draws the first step measured, not the first row
                *({"step": 20, "layer": f"net.{2 * n + 1}", "grad_norm": 9.0} for n in range(3)),
                *({"step": 0, "layer": f"net.{2 * n + 1}", "grad_norm": value} for n, value in enumerate(grads)),
            ]
            losses = [(10, 2.0), (30, 1e-13), (50, 1e7)] + ([(60, INF), (70, 1.0)] if diverged else [(60, 0.3)])
            history[child.run_id, "train/loss_epoch"] = losses
            history[child.run_id, "val/loss"] = [(10, 2.5), (30, math.nan if diverged else 0.4), (50, -INF)]
            children.append(child)
    return children, history


@pytest.mark.slow
def test_non_finite_values_stay_off_the_axes_and_every_finite_value_is_inside(tmp_path: Path) -> None:
    children, history = wild_runs()
    figures = {
        "along": along_axis_figure(children, "model.depth", ["train/loss_epoch", "val/loss", "val/acc"]),
        "curves": curves_figure(children, history),
        "grads": grad_norms_figure(children, lambda run_id: history.tables.get(run_id, [])),
    }
    for name, fig in figures.items():
        drawn = finite_values_inside(rendered(fig, tmp_path, f"{name}.png"))
        assert edge_marks(fig) > 0, f"{name}: non-finite values are marked on the edge"
        assert drawn, name
    curves = finite_values_inside(figures["curves"])
    assert min(curves) == pytest.approx(1e-13) and max(curves) == pytest.approx(1e7)  # neither falls off
    grads = finite_values_inside(figures["grads"])
    assert min(grads) == pytest.approx(1e-13) and max(grads) == pytest.approx(1e7)
    assert all(ax.get_yscale() == "log" for ax in figures["grads"].axes if ax.lines)


def test_a_diverged_curve_ends_at_its_divergence_step(tmp_path: Path) -> None:
    children, history = wild_runs()
    fig = rendered(curves_figure(children, history), tmp_path, "curves.png")
    diverged = next(c for c in children if c.outcome == "diverged")
    ax = next(a for a in fig.axes if a.get_ylabel() == "train/loss_epoch")  # 4 arms: one panel, coloured by arm
    steps = [list(line.get_xdata()) for line in data_lines(ax)]
    assert [10, 30, 50] in steps  # the seed-0 run up to step 60, where it hit inf; nothing after
    assert [t.get_text() for t in ax.texts] == ["× init=normal, depth=10: diverged at step 60"], diverged.arm


def test_scales_are_finite_whatever_the_values() -> None:
    cases = [
        [],
        [math.nan, INF, -INF],
        [5.0],
        [0.0],
        [-INF, 3.0, -2.0],
        [1e-300, 9.9e299],
        [5e-324, 1.0],
        [0.0, 1e-13, 1e7],
    ]
    for values in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scale = scale_for(values)
        lo, hi = scale.limits
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi and (lo > 0 or not scale.log), (values, scale)
        assert all(lo <= v <= hi for v in values if scale.drawable(v)), (values, scale)
    assert scale_for([0.0, 1e-13, 1e7]).log and not scale_for([0.1, 0.9]).log and not scale_for([-1.0, 1e7]).log


def test_each_metric_has_its_own_panel_and_y_label(tmp_path: Path) -> None:
    children = [
        run({"model.l2": l2}, seed, {"train/loss_epoch": 1 + l2, "val/loss": 2 + l2, "weight_norm/w": 3 / (1 + l2)})
        for l2 in (0.0, 0.1, 1.0)
        for seed in (0, 1)
    ]
    metrics = ["train/loss_epoch", "val/loss", "weight_norm/w"]
    fig = rendered(along_axis_figure(children, "model.l2", metrics), tmp_path, "along.png")
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_ylabel() for ax in panels] == metrics
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0.0", "0.1", "1.0"]
    assert "train/loss_epoch, val/loss, weight_norm/w along l2" in fig.get_suptitle()


def test_the_curves_are_losses_each_on_its_own_axis(tmp_path: Path) -> None:
    history = FakeHistory()
    children = []
    for l2 in (0.0, 3.0):
        metrics = {"train/loss_epoch": 1.0, "val/loss": 1.0, "weight_norm/w": 2.0}
        if l2:
            metrics["train/loss_data"] = 0.5  # only logged with a penalty on
        child = run({"model.l2": l2}, 0, metrics)
        for key in metrics:
            history[child.run_id, key] = [(10, 2.0), (20, 1.0)]
        children.append(child)
    fig = rendered(curves_figure(children, history), tmp_path, "curves.png")
    assert [ax.get_ylabel() for ax in fig.axes if ax.lines] == ["train/loss_data (L)", "val/loss"]
    assert all(len(data_lines(ax)) == 2 for ax in fig.axes if ax.lines)  # both arms, λ = 0 by its train/loss_epoch
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "l2" and [t.get_text() for t in legend.get_texts()] == ["0.0", "3.0"]


@pytest.mark.slow
def test_45_arms_get_a_panel_per_activation_and_depth_coloured_by_init(tmp_path: Path) -> None:
    inits = [{"model.init": "normal", "model.init_std": 0.01}, {"model.init": "normal", "model.init_std": 1.0}]
    inits += [{"model.init": name} for name in ("xavier_normal", "kaiming", "constant")]
    history = FakeHistory()
    children = []
    for init in inits:
        for act in ("relu", "sigmoid", "tanh"):
            for depth in (2, 10, 30):
                child = run({**init, "model.activation": act, "model.depth": depth}, 0, {"val/loss": 1.0})
                history[child.run_id, "val/loss"] = [(0, 2.0), (10, 1.0)]
                children.append(child)
    fig = rendered(curves_figure(children, history), tmp_path, "curves.png")
    titles = {ax.get_title() for ax in fig.axes if ax.lines}
    assert len(titles) == 9 and "activation=sigmoid, depth=10" in titles
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["constant", "kaiming", "normal init_std=0.01", "normal init_std=1.0", "xavier_normal"]
    along = rendered(along_axis_figure(children, "model.depth", ["val/loss"]), tmp_path, "along.png")
    assert {ax.get_title() for ax in along.axes if ax.lines} == {
        "activation=relu",
        "activation=sigmoid",
        "activation=tanh",
    }


def test_50_values_of_one_key_get_a_colour_bar(tmp_path: Path) -> None:
    history = FakeHistory()
    children = [run({"model.lr": round(0.001 * 1.2**i, 6)}, 0, {"val/loss": 1.0 / (i + 1)}) for i in range(50)]
    for i, child in enumerate(children):
        history[child.run_id, "val/loss"] = [(0, 2.0), (10, 1.0 / (i + 1))]
    fig = rendered(curves_figure(children, history), tmp_path, "curves.png")
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "lr"]
    assert len(bars) == 1 and 2 <= len(bars[0].get_yticklabels()) <= 25
    assert not fig.legends  # no 50-entry legend
    assert len(data_lines(next(ax for ax in fig.axes if ax.lines))) == 50


def test_curves_run_against_epochs_so_arms_of_every_size_line_up(tmp_path: Path) -> None:
    runs, history = [], FakeHistory()
    for num_train, steps_per_epoch in ((2, 1), (1000, 100)):  # the same 4 epochs: 4 steps, or 400
        child = run({"data.num_train": num_train}, 0, {"train/loss_epoch": 0.1, "val/loss": 0.2})
        runs.append(child)
        ends = [steps_per_epoch * (epoch + 1) - 1 for epoch in range(4)]
        history[child.run_id, "epoch"] = [(steps_per_epoch * epoch, float(epoch)) for epoch in range(4)]
        history[child.run_id, "train/loss_epoch"] = [(step, 1.0 / (i + 1)) for i, step in enumerate(ends)]
        history[child.run_id, "val/loss"] = [(step, 2.0 / (i + 1)) for i, step in enumerate(ends)]
    fig = rendered(curves_figure(runs, history), tmp_path, "curves.png")
    ax = next(a for a in fig.axes if a.get_ylabel() == "val/loss")
    assert ax.get_xlabel() == "epoch"
    assert [list(line.get_xdata()) for line in data_lines(ax)] == [[1.0, 2.0, 3.0, 4.0]] * 2


def test_penalised_runs_plot_L_beside_val_loss_and_categories_unjoined(tmp_path: Path) -> None:
    runs = [
        run({"model.activation": act, "model.l2": l2}, seed, {"train/loss_epoch": 5.0, "val/loss": 1.0, **extra})
        for act in ("relu", "sigmoid", "tanh")
        for l2, extra in ((0.0, {}), (1.0, {"train/loss_data": 0.5}))
        for seed in (0, 1)
    ]
    fig = rendered(along_axis_figure(runs, "model.activation", ["train/loss_epoch", "val/loss"]), tmp_path, "a.png")
    labels = {ax.get_ylabel() for ax in fig.axes if ax.lines}
    assert labels == {"train/loss_data (L)", "val/loss"}, "L, not J, is compared with val/loss"
    train = next(ax for ax in fig.axes if ax.get_ylabel() == "train/loss_data (L)")
    means = [line for line in data_lines(train) if line.get_alpha() is None]
    assert means and all(line.get_linestyle() == "None" for line in means), "relu, sigmoid, tanh are not joined"
    by_l2 = sorted(tuple(float(y) for y in line.get_ydata()) for line in means)
    assert by_l2 == [(0.5, 0.5, 0.5), (5.0, 5.0, 5.0)], "λ = 0 logs L as train/loss_epoch; λ = 1 logs it apart"


def test_the_memory_figure_is_drawn_only_where_depth_is_swept() -> None:
    from lit_d2l.sweeps.reports.memory_figure import FIXED, PER_EXAMPLE, SAVED, memory_figure

    def measured(depth: int) -> dict[str, float]:
        return {SAVED: 1024.0 * (depth + 1), PER_EXAMPLE: 16.0 * depth, FIXED: 512.0}

    one_depth = [run({"model.l2": l2, "model.depth": 1}, 0, measured(1)) for l2 in (0.0, 1.0)]
    assert memory_figure(one_depth) is None
    two_depths = [run({"model.depth": depth}, 0, measured(depth)) for depth in (1, 3)]
    assert memory_figure(two_depths) is not None


def test_a_run_that_diverged_before_its_first_epoch_ended_sits_in_epoch_one(tmp_path: Path) -> None:
    ok = run({"model.init_std": 0.01}, 0, {"train/loss_epoch": 0.1, "val/loss": 0.2})
    bad = run({"model.init_std": 1.0}, 0, {"train/loss_epoch": INF, "val/loss": INF}, diverged_at=0)
    history = FakeHistory({(ok.run_id, "epoch"): [(0, 0.0), (10, 1.0)], (ok.run_id, "val/loss"): [(9, 1.0), (19, 0.5)]})
    history[bad.run_id, "val/loss"] = [(0, INF)]
    fig = rendered(curves_figure([ok, bad], history), tmp_path, "curves.png")
    ax = next(a for a in fig.axes if a.get_ylabel() == "val/loss")
    assert ax.get_xlabel() == "epoch" and next(list(line.get_xdata()) for line in data_lines(ax)) == [1.0, 2.0]
    assert [t.get_text() for t in ax.texts] == ["× 1.0: diverged in epoch 1"]


def test_300_values_of_one_key_get_a_colour_bar_of_the_lines_own_colours(tmp_path: Path) -> None:
    """More values than a colormap has colours (256) still make a figure: one colour per value."""
    history = FakeHistory()
    children = [run({"model.lr": round(0.001 * 1.01**i, 8)}, 0, {"val/loss": 1.0 / (i + 1)}) for i in range(300)]
    for i, child in enumerate(children):
        history[child.run_id, "val/loss"] = [(0, 2.0), (10, 1.0 / (i + 1))]
    fig = rendered(curves_figure(children, history), tmp_path, "curves.png")
    (bar,) = [ax for ax in fig.axes if ax.get_ylabel() == "lr"]
    assert 2 <= len(bar.get_yticklabels()) <= 25
    lines = data_lines(next(ax for ax in fig.axes if ax.lines))
    (mesh,) = [c for c in bar.collections if c.get_array() is not None]  # the bar's colours (also: its outline)
    assert mesh.cmap.N == 300  # a bin per value, in the lines' own colours
    assert {tuple(mesh.cmap(i)) for i in range(300)} == {tuple(line.get_color()) for line in lines}
    rendered(along_axis_figure(children, "model.lr", ["val/loss"]), tmp_path, "along.png")
