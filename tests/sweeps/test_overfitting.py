"""D2L 2nd ed. §4.4 on a reduced overfitting suite: underfit, fit, overfit and recovery."""

from __future__ import annotations

import pytest

from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.spec import load_spec
from tests.sweeps.test_sweep import spec_file


@pytest.mark.slow
def test_degree_and_data_size_show_under_and_overfitting(tmp_path, tracking_uri, experiment) -> None:
    body = """
grid: {data.degree: [2, 4, 20], data.num_train: [2, 200]}
metrics: [train/loss_epoch, val/loss]
"""
    path = spec_file(tmp_path, experiment, body, base="polynomial.yaml")
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    final = {o.arm: (o.metrics["train/loss_epoch"], o.metrics["val/loss"]) for o in result.outcomes}

    def losses(degree: int, n: int) -> tuple[float, float]:
        return final[f"data.degree={degree};data.num_train={n}"]

    train, val = losses(2, 200)
    assert train > 1 and val > 1, "2 features cannot express the cubic: both losses stay high"
    train, val = losses(4, 200)
    assert train < 0.03 and val < 0.03, "4 features fit: both near the noise floor (0.1² = 0.01)"
    train, val = losses(20, 2)
    assert val > 10 * train, "20 features on 2 examples overfit"
    assert losses(20, 200)[1] < losses(20, 2)[1] / 10, "more data repairs the overfitting"
