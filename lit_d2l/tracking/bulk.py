"""Metric rows for a SQLite store in one statement per flush.

MLflow's ``log_batch`` builds one ORM object per value and re-reads the latest-metric rows:
about 75 µs a value on SQLite, most of what per-step tracking of a small model costs. For a
SQLite store (the default) :class:`SqliteMetricWriter` writes the same rows with one
``executemany``: the same validation, the same NaN/inf encoding, duplicates ignored as MLflow
ignores them, and the same rule for the latest value of each key (highest step, then timestamp,
then value). The tables are MLflow's own definitions; any other store, or a schema without the
columns written here, falls back to ``log_batch`` (see :func:`sqlite_metric_writer`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import sqlalchemy as sa
from mlflow.entities import LifecycleStage, Metric
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
from mlflow.utils.validation import _validate_metric
from sqlalchemy.pool import NullPool

from lit_d2l.tracking.store import sqlite_path

_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
_SQL_FLOAT_MAX = 1.7976931348623157e308  # MLflow stores ±inf as ±(max float64); SQL has no inf
_BUSY_TIMEOUT_S = 30  # concurrent ablation workers share one database file


class SqliteMetricWriter:
    """Writes metrics of a run into MLflow's ``metrics`` and ``latest_metrics`` tables in one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._metrics, self._latest, self._runs = SqlMetric.__table__, SqlLatestMetric.__table__, SqlRun.__table__

    def write(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Insert ``metrics`` for ``run_id``; raises ``MlflowException`` as ``log_batch`` would."""
        if not metrics:
            return
        rows: dict[tuple, dict] = {}
        validated: set[str] = set()
        for metric in metrics:
            if metric.key not in validated:
                _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
                validated.add(metric.key)
            row = _row(run_id, metric)
            rows.setdefault((row["key"], row["timestamp"], row["step"], row["value"], row["is_nan"]), row)
        latest: dict[str, dict] = {}
        for row in rows.values():
            best = latest.get(row["key"])
            if best is None or _order(row) > _order(best):
                latest[row["key"]] = row
        with self._engine.begin() as connection:
            self._check_active(connection, run_id)
            connection.execute(sa.insert(self._metrics).prefix_with("OR IGNORE"), list(rows.values()))
            for key, row in latest.items():
                self._update_latest(connection, run_id, key, row)

    def _check_active(self, connection: sa.Connection, run_id: str) -> None:
        query = sa.select(self._runs.c.lifecycle_stage).where(self._runs.c.run_uuid == run_id)
        stage = connection.execute(query).scalar_one_or_none()
        if stage is None:
            raise MlflowException(f"Run with id={run_id} not found")
        if stage != LifecycleStage.ACTIVE:
            raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")

    def _update_latest(self, connection: sa.Connection, run_id: str, key: str, row: dict) -> None:
        table = self._latest
        where = (table.c.run_uuid == run_id) & (table.c.key == key)
        current = connection.execute(sa.select(table.c.step, table.c.timestamp, table.c.value).where(where)).first()
        if current is None:
            connection.execute(sa.insert(table), [row])
        elif _order(row) > tuple(current):
            values = {name: row[name] for name in ("value", "timestamp", "step", "is_nan")}
            connection.execute(sa.update(table).where(where).values(**values))


def _row(run_id: str, metric: Metric) -> dict:
    value = float(metric.value)
    is_nan = math.isnan(value)
    if is_nan:
        value = 0.0
    elif math.isinf(value):
        value = math.copysign(_SQL_FLOAT_MAX, value)
    return {
        "key": metric.key,
        "value": value,
        "timestamp": int(metric.timestamp),
        "step": int(metric.step or 0),
        "is_nan": is_nan,
        "run_uuid": run_id,
    }


def _order(row: dict) -> tuple[int, int, float]:
    """Which value is the latest of a key, as MLflow decides it: step, then timestamp, then value."""
    return row["step"], row["timestamp"], row["value"]


@functools.cache
def sqlite_metric_writer(tracking_uri: str) -> SqliteMetricWriter | None:
    """A bulk writer for a ``sqlite:///`` store whose tables have MLflow's metric columns, else None."""
    if sqlite_path(tracking_uri) is None:
        return None
    # A connection per flush (flushes are rare): none is left open on a database file that is later replaced.
    engine = sa.create_engine(tracking_uri, connect_args={"timeout": _BUSY_TIMEOUT_S}, poolclass=NullPool)
    for table in (SqlMetric.__table__, SqlLatestMetric.__table__):
        try:
            columns = {column["name"]: column for column in sa.inspect(engine).get_columns(table.name)}
        except sa.exc.SQLAlchemyError:
            return None
        extra_required = [
            name
            for name, column in columns.items()
            if name not in _COLUMNS and not column.get("nullable", True) and column.get("default") is None
        ]
        if not set(_COLUMNS) <= set(columns) or extra_required:
            return None
    return SqliteMetricWriter(engine)
