"""Writes two processes may make at the same instant, made so that both succeed.

MLflow's SQL store looks a row up, then inserts it when it is missing: two writers that look at once
both insert, and the second fails on the table's UNIQUE constraint. ``log_batch`` retries tags that
lose this race; ``set_tag`` and ``log_inputs`` do not. Sweeps on several workers log one dataset into
one experiment at once, and two stale-run sweeps or two resumes tag one run at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.entities import DatasetInput, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

# How the databases MLflow supports word a broken UNIQUE constraint (SQLite, PostgreSQL, MySQL).
_DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, object]) -> None:
    """Set ``tags`` on run ``run_id`` in one call, retried by MLflow when a rival writes the same key."""
    client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def log_inputs(client: MlflowClient, run_id: str, datasets: list[DatasetInput]) -> None:
    """Record ``datasets`` as inputs of run ``run_id``; a dataset a rival stored a moment ago is reused."""
    try:
        client.log_inputs(run_id, datasets=datasets)
    except MlflowException as exc:
        if not any(words in str(exc) for words in _DUPLICATE_ROW):
            raise
        client.log_inputs(run_id, datasets=datasets)  # the rival's row is there now: this look finds it
