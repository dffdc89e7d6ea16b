"""What one `lit-d2l fit` leaves in MLflow, on a temporary SQLite store."""

from __future__ import annotations

import itertools

import pytest
import yaml
from mlflow.tracking import MlflowClient

from lit_d2l.fit.run import run_configured
from tests.conftest import linear_fit_args, only_run


def test_fit_records_params_metrics_config_and_status(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    result = run_configured("fit", linear_fit_args(tracking_uri, experiment))
    run = only_run(client, experiment)
    assert run.info.run_id == result.run_id
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["model.class_path"] == "lit_d2l.models.LinearRegressionScratch"
    assert params["model.lr"] == "0.03"
    assert params["data.batch_size"] == "32"
    assert params["data.w"] == "[2.0, -3.4]"
    assert params["trainer.max_epochs"] == "3"
    assert params["seed_everything"] == "42"
    assert params["seeds.dropout"] == "42"
    seeds = {params[f"seeds.{stream}"] for stream in ("init", "data", "shuffle")}
    assert len(seeds) == 3 and "42" not in seeds, "each stream its own derived seed"

    def history(key: str) -> list[int]:
        return [m.step for m in client.get_metric_history(run.info.run_id, key)]

    steps_per_epoch = 1000 // 32 + 1
    logged = history("train/loss")  # every trainer.log_every_n_steps = 2 steps
    assert len(logged) == 3 * steps_per_epoch // 2
    assert {b - a for a, b in itertools.pairwise(logged)} == {2}
    assert len(history("train/loss_epoch")) == 3
    assert len(history("val/loss")) == 3
    assert {"test/loss", "param_err/w", "param_err/b", "closed_form_gap"} <= set(run.data.metrics)
    assert run.data.metrics["test/loss"] < 0.2

    tags = run.data.tags
    assert tags["model"] == "LinearRegressionScratch"
    assert tags["dataset"] == "SyntheticRegressionData"
    assert tags["lit_d2l.version"]

    config_file = client.download_artifacts(run.info.run_id, "config.yaml")
    with open(config_file) as f:
        config = yaml.safe_load(f)
    assert config["model"]["init_args"]["lr"] == 0.03
    assert config["trainer"]["max_epochs"] == 3
    assert config["seed_everything"] == 42


@pytest.mark.slow
def test_given_weights_are_learned_within_a_hundredth(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    extra = ["--data.w", "[1.5, -2.0, 0.7]", "--data.b", "-1.0", "--trainer.max_epochs", "10"]
    result = run_configured("fit", linear_fit_args(tracking_uri, experiment, *extra))
    metrics = only_run(client, experiment).data.metrics
    assert metrics["param_err/w"] < 0.01
    assert metrics["param_err/b"] < 0.01
    assert metrics["closed_form_gap"] < 0.01
    assert result.learned["learned w"].count(",") == 2


def test_metrics_are_written_in_batches_not_one_call_per_value(tracking_uri: str, experiment: str, monkeypatch) -> None:
    calls = {"log_batch": 0, "log_metric": 0}
    original = MlflowClient.log_batch

    def counting_log_batch(self, *args, **kwargs):
        calls["log_batch"] += 1
        return original(self, *args, **kwargs)

    def forbidden_log_metric(self, *args, **kwargs):
        calls["log_metric"] += 1

    monkeypatch.setattr(MlflowClient, "log_batch", counting_log_batch)
    monkeypatch.setattr(MlflowClient, "log_metric", forbidden_log_metric)
    run_configured("fit", linear_fit_args(tracking_uri, experiment))
    # ~400 values (96 steps x 2 + epochs + test) and ~80 params: a handful of writes, not hundreds
    # (one at the start, one with each of the 3 epoch checkpoints, the rest at the end).
    assert calls["log_metric"] == 0
    assert 1 <= calls["log_batch"] <= 10, calls


def test_print_config_runs_nothing(tracking_uri: str, client: MlflowClient, experiment: str, capsys) -> None:
    assert run_configured("fit", linear_fit_args(tracking_uri, experiment, "--print_config")) is None
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lit_d2l.models.LinearRegressionScratch"
    assert client.get_experiment_by_name(experiment) is None
