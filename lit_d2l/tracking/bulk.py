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
import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from mlflow.entities import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
from mlflow.utils.validation import _validate_metric
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import NullPool

from lit_d2l.tracking.store import sqlite_path

_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
_SQL_FLOAT_MAX = 1.7976931348623157e308  # MLflow stores ±inf as ±(max float64); SQL has no inf
_SQLITE_UPSERT = (3, 24)  # INSERT ... ON CONFLICT DO UPDATE
_BUSY_TIMEOUT_S = 30  # concurrent ablation workers share one database file


class SqliteMetricWriter:
    """Writes metrics of a run into MLflow's ``metrics`` and ``latest_metrics`` tables in one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._runs = SqlRun.__table__
        # Rows go to the driver as plain tuples: SQLAlchemy's per-row parameter handling cost as much as SQLite.
        self._insert_rows = (
            f"INSERT OR IGNORE INTO {SqlMetric.__table__.name} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )
        latest = SqlLatestMetric.__table__
        # One upsert for every key: a stored latest value is replaced only by a later one (SQLite >= 3.24).
        insert = sqlite_insert(latest)
        newer = sa.tuple_(insert.excluded.step, insert.excluded.timestamp, insert.excluded.value) > sa.tuple_(
            latest.c.step, latest.c.timestamp, latest.c.value
        )
        self._upsert_latest = insert.on_conflict_do_update(
            index_elements=[latest.c.key, latest.c.run_uuid],
            set_={name: insert.excluded[name] for name in ("value", "timestamp", "step", "is_nan")},
            where=newer,
        )

    def write(self, run_id: str, metrics: Sequence[tuple[str, float, int, int]]) -> None:
        """Insert ``(key, value, timestamp ms, step)`` rows for ``run_id``; raises ``MlflowException`` as
        ``log_batch`` would (invalid name or value, unknown or deleted run), writing nothing then."""
        if not metrics:
            return
        validated: set[str] = set()
        for key, value, timestamp, step in metrics:
            if key not in validated:
                _validate_metric(key, value, timestamp, step)
                validated.add(key)
        rows = list(dict.fromkeys(_row(run_id, *metric) for metric in metrics))  # duplicates once, in order
        latest: dict[str, tuple] = {}
        for row in rows:
            best = latest.get(row[0])
            if best is None or _order(row) > _order(best):
                latest[row[0]] = row
        with self._engine.begin() as connection:
            self._check_active(connection, run_id)
            connection.exec_driver_sql(self._insert_rows, rows)
            connection.execute(self._upsert_latest, [dict(zip(_COLUMNS, row, strict=True)) for row in latest.values()])

    def _check_active(self, connection: sa.Connection, run_id: str) -> None:
        query = sa.select(self._runs.c.lifecycle_stage).where(self._runs.c.run_uuid == run_id)
        stage = connection.execute(query).scalar_one_or_none()
        if stage is None:
            raise MlflowException(f"Run with id={run_id} not found")
        if stage != LifecycleStage.ACTIVE:
            raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")


def _row(run_id: str, key: str, value: float, timestamp: int, step: int) -> tuple:
    """A row in ``_COLUMNS`` order; NaN is stored as 0 with ``is_nan``, ±inf as ±(max float64), as MLflow does."""
    value = float(value)
    is_nan = math.isnan(value)
    if is_nan:
        value = 0.0
    elif math.isinf(value):
        value = math.copysign(_SQL_FLOAT_MAX, value)
    return key, value, int(timestamp), int(step or 0), is_nan, run_id


def _order(row: tuple) -> tuple[int, int, float]:
    """Which value is the latest of a key, as MLflow decides it: step, then timestamp, then value."""
    return row[3], row[2], row[1]


@functools.cache
def sqlite_metric_writer(tracking_uri: str) -> SqliteMetricWriter | None:
    """A bulk writer for a ``sqlite:///`` store whose tables have MLflow's metric columns, else None."""
    if sqlite_path(tracking_uri) is None or sqlite3.sqlite_version_info < _SQLITE_UPSERT:
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
