"""TrackingLogger writes exactly what was logged, through MlflowClient.log_batch only."""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import closing

MAX = sys.float_info.max  # MLflow's SQL stores keep ±inf as ±(max float64)

# (clock in ms, step, metrics) for each log_metrics call; a flush after each group.
FIRST_FLUSH = [
    (1000, 0, {"train/loss": 0.5}),
    (1001, 1, {"train/loss": torch.tensor(0.25)}),  # a 0-dim tensor, read off its device at flush
    (1001, 1, {"train/loss": 0.25}),  # exact duplicate: stored once
    (1002, 2, {"train/loss": math.nan, "val/loss": math.inf}),
    (1004, 3, {"val/loss": torch.tensor(-math.inf)}),
    (1005, 7, {"weight_norm/w": 2.0}),
    (1005, 7, {"weight_norm/w": 3.0}),  # same step and time: the larger value is the latest
]
SECOND_FLUSH = [
    (999, 5, {"train/loss": 0.125}),  # a later step with an earlier clock still wins
    (2000, 1, {"val/loss": 9.0}),  # an earlier step does not replace the latest
    (1000, 0, {"train/loss": 0.5}),  # already stored by the first flush
]
HISTORY = {
    "train/loss": [(0, 1000, 0.5), (1, 1001, 0.25), (2, 1002, math.nan), (5, 999, 0.125)],
    "val/loss": [(1, 2000, 9.0), (2, 1002, MAX), (3, 1004, -MAX)],
    "weight_norm/w": [(7, 1005, 2.0), (7, 1005, 3.0)],
}
LATEST = {"train/loss": 0.125, "val/loss": -MAX, "weight_norm/w": 3.0}


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def _same(got: list[tuple[int, int, float]], expected: list[tuple[int, int, float]]) -> bool:
    """Equal lists, with NaN equal to NaN."""
    return len(got) == len(expected) and all(
        g[:2] == e[:2] and (g[2] == e[2] or (math.isnan(g[2]) and math.isnan(e[2])))
        for g, e in zip(got, expected, strict=True)
    )


def test_logger_writes_exactly_what_was_logged(tracking_uri, client, experiment, monkeypatch) -> None:
    logger = TrackingLogger(experiment, tracking_uri=tracking_uri)
    run_id = logger.run_id
    for calls in (FIRST_FLUSH, SECOND_FLUSH):
        for clock_ms, step, metrics in calls:
            with monkeypatch.context() as patch:
                patch.setattr(time, "time", lambda clock_ms=clock_ms: (clock_ms + 0.5) / 1000)  # mid-millisecond
                logger.log_metrics(metrics, step=step)
        logger.flush()
    logger.finalize("success")
    for key, expected in HISTORY.items():
        got = _history(client, run_id, key)
        assert _same(got, expected), (key, got)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == LATEST


def test_steps_latest_values_and_epoch_changes_only(tracking_uri, client, experiment) -> None:
    logger = TrackingLogger(experiment, tracking_uri=tracking_uri, flush_every=7)
    for step in range(20):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "epoch": step // 10}, step=step)
    logger.finalize("success")
    losses = client.get_metric_history(logger.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in losses) == [(step, 1.0 / (step + 1)) for step in range(20)]
    epochs = client.get_metric_history(logger.run_id, "epoch")
    assert sorted((m.step, m.value) for m in epochs) == [(0, 0.0), (10, 1.0)]
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"train/loss": pytest.approx(1 / 20), "epoch": 1.0}


def test_a_resumed_run_records_epoch_only_when_it_changes_from_the_stored_one(tracking_uri, client, experiment) -> None:
    """A fit killed mid-epoch and resumed from an earlier checkpoint goes on in the epoch the run last stored."""
    first = TrackingLogger(experiment, tracking_uri=tracking_uri)
    for step in (1, 33, 65):
        first.log_metrics({"train/loss": 1.0, "epoch": step // 32}, step=step)
    first.flush()
    first.finalize("failed")
    resumed = TrackingLogger(experiment, tracking_uri=tracking_uri, run_id=first.run_id)
    assert resumed.run_id == first.run_id  # taken over, as a fit's logger is before its first step
    for step in (66, 67, 97):  # steps after the stored ones, still in epoch 2, then epoch 3
        resumed.log_metrics({"train/loss": 1.0, "epoch": step // 32}, step=step)
    resumed.finalize("success")
    epochs = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "epoch"))
    assert epochs == [(1, 0.0), (33, 1.0), (65, 2.0), (97, 3.0)]


def test_writes_are_log_batch_calls_within_mlflow_limits_and_precede_the_end(
    tracking_uri, client, experiment, monkeypatch
) -> None:
    calls: list[tuple[int, int, int]] = []
    stored_at_end: list[int] = []
    log_batch, set_terminated = MlflowClient.log_batch, MlflowClient.set_terminated

    def counting_log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        calls.append((len(metrics), len(params), len(tags)))
        return log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    def checking_set_terminated(self, run_id, *args, **kwargs):
        stored_at_end.append(len(MlflowClient(tracking_uri).get_metric_history(run_id, "x")))
        return set_terminated(self, run_id, *args, **kwargs)

    def forbidden(self, *args, **kwargs):
        raise AssertionError("only log_batch may write metrics, params and tags")

    monkeypatch.setattr(MlflowClient, "log_batch", counting_log_batch)
    monkeypatch.setattr(MlflowClient, "set_terminated", checking_set_terminated)
    for name in ("log_metric", "log_param", "set_tag"):
        monkeypatch.setattr(MlflowClient, name, forbidden)

    with closing(TrackingLogger(experiment, tracking_uri=tracking_uri, flush_every=10_000)) as logger:
        logger.log_hyperparams({f"p{i}": i for i in range(130)})
        logger.set_tags({f"t{i}": i for i in range(10)})
        for step in range(2500):
            logger.log_metrics({"x": float(step)}, step=step)
    assert stored_at_end == [2500]
    assert all(m <= 1000 and p <= 100 and t <= 100 and m + p + t <= 1000 for m, p, t in calls), calls  # MLflow's
    assert len(calls) == 3  # 2,640 values, 130 params: the fewest calls those limits allow
    assert sum(m for m, _, _ in calls) == 2500
    assert sum(p for _, p, _ in calls) == 130 and sum(t for _, _, t in calls) == 10
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 130
    assert {f"t{i}" for i in range(10)} <= set(run.data.tags)


def test_taking_over_a_run_this_process_just_claimed_writes_nothing(tracking_uri, client, experiment, monkeypatch):
    """A sweep's pair is claimed RUNNING with its owner tags, then fitted in that run: taking it over costs no
    store round trip (two a run before). A run that another process owned is tagged with its new owner."""
    from lit_d2l.tracking.liveness import OWNER_TAG
    from lit_d2l.tracking.logger import ensure_experiment
    from lit_d2l.tracking.sweeps import SweepStore

    writes: list[str] = []

    def counted(name: str):
        method = getattr(MlflowClient, name)
        return lambda self, *args, **kwargs: (writes.append(name), method(self, *args, **kwargs))[1]

    for name in ("log_batch", "update_run"):
        monkeypatch.setattr(MlflowClient, name, counted(name))
    experiment_id = ensure_experiment(client, experiment, tracking_uri)
    store = SweepStore(tracking_uri)
    claimed = store.start_run(experiment_id, "pair", {"arm": "a"})
    taken = store.start_run(experiment_id, "other", {"arm": "b"})
    client.set_tag(taken, OWNER_TAG, "another-host:1:0")
    for run_id, arm, expected in ((claimed, "a", []), (taken, "b", ["log_batch", "update_run"])):
        writes.clear()
        logger = TrackingLogger(experiment, tracking_uri=tracking_uri, tags={"arm": arm}, run_id=run_id)
        assert logger.run_id == run_id
        assert writes == expected
        logger.end_run("FINISHED")
    assert client.get_run(taken).data.tags[OWNER_TAG] != "another-host:1:0"
