"""Runs a user can tell apart in the dashboard, in experiments that open on their runs table."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.fit.run import default_run_name, run_configured
from lit_d2l.models import LinearRegressionScratch
from lit_d2l.tracking.logger import EXPERIMENT_TAGS, ensure_experiment
from tests.conftest import linear_fit_args, seed


def test_new_and_old_experiments_are_marked_for_model_training(tracking_uri, client: MlflowClient, experiment):
    created = ensure_experiment(client, experiment, tracking_uri)
    assert client.get_experiment(created).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment(experiment + "-old")  # made without the tag (older lit-d2l, or by hand)
    assert ensure_experiment(client, experiment + "-old", tracking_uri) == old
    assert client.get_experiment(old).tags.items() >= EXPERIMENT_TAGS.items()


def test_default_run_names_say_what_ran_and_ignore_the_seed():
    names = []
    for _ in range(2):
        seed(0)  # MLflow's own names come from the seeded global generator: the same name every time
        names.append(default_run_name(["experiments/linear_regression.yaml"], LinearRegressionScratch()))
    assert names[0] != names[1]
    assert all(name.startswith("linear_regression-LinearRegressionScratch-") for name in names)


@pytest.mark.slow
def test_two_fits_with_one_seed_get_two_names(tracking_uri, client: MlflowClient, experiment):
    args = linear_fit_args(tracking_uri, experiment, "--trainer.max_epochs=1")
    ids = [run_configured("fit", args).run_id for _ in range(2)]
    names = {client.get_run(run_id).info.run_name for run_id in ids}
    assert len(names) == 2
