"""Polynomial regression on the shipped configs: the 2nd edition's xⁱ/i! features and the 1st edition's §3.11."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.runner import run_configured
from tests.conftest import REPO, only_run
from tests.test_cli import QUIET

EXPERIMENTS = REPO / "experiments"


def fit(config: str, tracking_uri: str, client: MlflowClient, experiment: str, *extra: str) -> dict[str, float]:
    """The final metrics of one fit of a shipped config, as MLflow recorded them (the fit checks included)."""
    args = ["--config", str(EXPERIMENTS / config), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    run_configured("fit", [*args, *QUIET, *extra])
    run = only_run(client, experiment)
    assert run.info.status == "FINISHED"
    return run.data.metrics


@pytest.mark.slow
def test_four_features_end_at_the_least_squares_solution(tracking_uri, client, experiment) -> None:
    """400 epochs of SGD on xⁱ/i!, i < 4, land within 1e-3 of the closed form (x⁰ plays the bias, b* = 0)."""
    metrics = fit("polynomial.yaml", tracking_uri, client, experiment)
    assert metrics["closed_form_gap"] <= 1e-3
    assert metrics["param_err/w"] < 0.1
