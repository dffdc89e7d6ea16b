"""D2L 5.4 on a reduced initialisation suite, and the numerical-stability figures."""

from __future__ import annotations

import json

import pytest

from lit_d2l.callbacks.diagnostics import UNITS
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.reports.figures import layer_table
from lit_d2l.sweeps.reports.stability import (
    matrix_product_norm,
    scalar_chain,
    sigmoid_stack_gradient,
    stability_figures,
)
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import SweepStore
from tests.sweeps.test_sweep import spec_file


def test_stability_figures_match_the_book() -> None:
    assert scalar_chain(0.2, 30) == pytest.approx(0.2**30) == pytest.approx(1.07e-21, rel=0.01)
    assert scalar_chain(5.0, 30) == pytest.approx(9.31e20, rel=0.01)
    assert matrix_product_norm(100) > 1e15, "100 products of 4x4 N(0, 1) matrices explode"
    assert sigmoid_stack_gradient(30) < 0.25**30 * 1.0001, "each sigmoid' <= 0.25"
    assert set(stability_figures()) >= {"stability/scalar_chain_w0.2_depth30", "stability/scalar_chain_w5_depth30"}


@pytest.mark.slow
def test_tiny_init_vanishes_kaiming_trains_and_unit_variance_explodes(tmp_path, tracking_uri, client, experiment):
    body = """
arms:
  - {model.init: normal, model.init_std: 0.01}
  - {model.init: normal, model.init_std: 1.0}
  - {model.init: kaiming}
grid: {model.activation: [relu], model.depth: [10]}
overrides: {trainer.max_epochs: 3}
metrics: [val/acc]
diagnostics_every: 10
max_grad_norm: 1.0e4
stability_demo: true
"""
    path = spec_file(tmp_path, experiment, body, base="init_classification.yaml")
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    store = SweepStore(tracking_uri)
    children = {c.arm: c for c in store.children(store.client.get_run(result.parent_run_id))}
    rest = ";model.activation=relu;model.depth=10"
    tiny = children["model.init=normal;model.init_std=0.01" + rest]
    unit = children["model.init=normal;model.init_std=1.0" + rest]
    kaiming = children["model.init=kaiming" + rest]
    assert kaiming.outcome == "finished" and kaiming.metrics["val/acc"] > 0.5
    assert tiny.metrics["val/acc"] < 0.3, "gradients vanish through 10 layers of N(0, 0.01²)"

    def first_layer_grad_at_step_0(child) -> float:
        (value,) = [r["grad_norm"] for r in layer_table(store, child.run_id) if (r["step"], r["layer"]) == (0, "net.1")]
        return value

    assert first_layer_grad_at_step_0(tiny) < 1e-6 * first_layer_grad_at_step_0(kaiming)
    assert unit.outcome == "diverged" or unit.metrics["val/acc"] < 0.5
    parent_metrics = client.get_run(result.parent_run_id).data.metrics
    assert parent_metrics["stability/scalar_chain_w5_depth30"] == pytest.approx(9.31e20, rel=0.01)


@pytest.mark.slow
def test_constant_init_leaves_one_distinct_unit_per_layer_random_init_all(tmp_path, tracking_uri, experiment) -> None:
    """D2L 5.4.3 on a reduced initialization suite: symmetry is never broken by training."""
    body = """
arms:
  - {model.init: constant, model.init_value: 0.05}
  - {model.init: kaiming}
grid: {model.activation: [relu], model.depth: [3]}
overrides: {trainer.max_epochs: 1, data.num_train: 256, data.num_val: 64, log_graph: false,
  trainer.log_every_n_steps: 2}
metrics: [val/acc]
diagnostics_every: 3
"""
    path = spec_file(tmp_path, experiment, body, base="init_classification.yaml")
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    store = SweepStore(tracking_uri)
    children = {c.arm.split(";")[0]: c for c in store.children(store.client.get_run(result.parent_run_id))}
    layers = ["net.1", "net.3", "net.5"]  # the three hidden layers; net.7 is the output
    constant, kaiming = children["model.init=constant"], children["model.init=kaiming"]
    units = {name: json.loads(store.download(c.run_id, UNITS).read_text()) for name, c in children.items()}
    assert units["model.init=constant"] == dict.fromkeys(layers, 1)
    assert units["model.init=kaiming"] == dict.fromkeys(layers, 64), "hidden_sizes [64]"
    assert (constant.metrics["distinct_units/min"], kaiming.metrics["distinct_units/min"]) == (1, 64)
    # The run page opens on the losses: a few summaries, every per-layer value in the table.
    # 14: losses (4), val/acc, weight_norm, epoch, 4 gradient/activation summaries, distinct_units/min, memory (3)
    assert len(kaiming.metrics) <= 14 and {"train/loss", "val/loss"} <= set(kaiming.metrics), sorted(kaiming.metrics)
    assert not [key for key in kaiming.metrics if "net." in key], "no metric per layer"
    rows = layer_table(store, kaiming.run_id)
    steps = [m.step for m in store.client.get_metric_history(kaiming.run_id, "grad_norm/max")]
    weights = [*layers, "net.7"]
    assert [(r["step"], r["layer"]) for r in rows] == [(s, w) for s in steps for w in weights] and len(steps) > 1
    assert constant.metrics["memory/saved_for_backward_bytes"] == kaiming.metrics["memory/saved_for_backward_bytes"]
