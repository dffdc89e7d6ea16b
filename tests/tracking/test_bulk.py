"""The SQLite bulk metric writer stores exactly what MLflow's log_batch stores."""

from __future__ import annotations

import math
import sqlite3

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.bulk import sqlite_metric_writer

FIRST_FLUSH = [
    Metric("train/loss", 0.5, 1000, 0),
    Metric("train/loss", 0.25, 1001, 1),
    Metric("train/loss", 0.25, 1001, 1),  # exact duplicate: stored once
    Metric("train/loss", math.nan, 1002, 2),
    Metric("val/loss", math.inf, 1003, 2),
    Metric("val/loss", -math.inf, 1004, 3),
    Metric("weight_norm/w", 2.0, 1005, 7),
    Metric("weight_norm/w", 3.0, 1005, 7),  # same step and time: the larger value is the latest
]
SECOND_FLUSH = [
    Metric("train/loss", 0.125, 999, 5),  # a later step with an earlier clock still wins
    Metric("val/loss", 9.0, 2000, 1),  # an earlier step does not replace the latest
    Metric("train/loss", 0.5, 1000, 0),  # already stored in the first flush
]


def _rows(metrics: list[Metric]) -> list[tuple[str, float, int, int]]:
    return [(m.key, m.value, m.timestamp, m.step) for m in metrics]


def _new_run(client: MlflowClient, experiment: str) -> str:
    experiment_id = client.get_experiment_by_name(experiment)
    if experiment_id is None:
        return client.create_run(client.create_experiment(experiment)).info.run_id
    return client.create_run(experiment_id.experiment_id).info.run_id


def _stored(client: MlflowClient, run_id: str) -> tuple[dict, dict]:
    keys = ("train/loss", "val/loss", "weight_norm/w")
    history = {
        key: sorted((m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(run_id, key))
        for key in keys
    }
    latest = {key: repr(value) for key, value in client.get_run(run_id).data.metrics.items()}
    return history, latest


def test_bulk_rows_equal_log_batch_rows(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    writer = sqlite_metric_writer(tracking_uri)
    assert writer is not None
    by_mlflow, by_writer = _new_run(client, experiment), _new_run(client, experiment)
    for batch in (FIRST_FLUSH, SECOND_FLUSH):
        client.log_batch(by_mlflow, metrics=batch)
        writer.write(by_writer, _rows(batch))
    history, latest = _stored(client, by_writer)
    assert (history, latest) == _stored(client, by_mlflow)
    assert len(history["train/loss"]) == 4  # duplicates dropped, within and across flushes
    assert latest == {"train/loss": "0.125", "val/loss": repr(-1.7976931348623157e308), "weight_norm/w": "3.0"}


def test_bulk_refuses_what_log_batch_refuses(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    writer = sqlite_metric_writer(tracking_uri)
    assert writer is not None
    run_id = _new_run(client, experiment)
    bad = [Metric("bad name?!", 1.0, 0, 0)]
    with pytest.raises(MlflowException) as by_mlflow:
        client.log_batch(run_id, metrics=bad)
    with pytest.raises(MlflowException) as by_writer:
        writer.write(run_id, _rows(bad))
    for error in (by_mlflow, by_writer):
        assert 'Invalid value "bad name?!"' in str(error.value)
        assert "Names may only contain" in str(error.value)
    with pytest.raises(MlflowException, match="not found"):
        writer.write("0" * 32, [("a", 1.0, 0, 0)])
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="active"):
        writer.write(run_id, [("a", 1.0, 0, 0)])
    assert client.get_metric_history(run_id, "a") == []


def test_other_stores_use_log_batch(tmp_path) -> None:
    assert sqlite_metric_writer("http://127.0.0.1:5000") is None
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:  # a metrics table of another shape
        db.execute("CREATE TABLE metrics (key TEXT, val REAL)")
        db.execute("CREATE TABLE latest_metrics (key TEXT, value REAL)")
    assert sqlite_metric_writer(f"sqlite:///{foreign}") is None


@pytest.mark.parametrize("bulk", [True, False])
def test_logger_paths_agree(tracking_uri: str, client: MlflowClient, experiment: str, bulk: bool) -> None:
    logger = TrackingLogger(experiment, tracking_uri=tracking_uri, flush_every=7, bulk_sqlite=bulk)
    for step in range(20):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "epoch": step // 10}, step=step)
    logger.finalize("success")
    losses = client.get_metric_history(logger.run_id, "train/loss")
    assert [m.step for m in sorted(losses, key=lambda m: m.step)] == list(range(20))
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"train/loss": pytest.approx(1 / 20), "epoch": 1.0}
