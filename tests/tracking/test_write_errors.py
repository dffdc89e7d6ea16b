"""Failed writes during a run (disk full, read-only store) become one line, whatever wraps them."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from lit_d2l.cli.main import main
from lit_d2l.tracking import check_store, storage_error
from tests.conftest import LINEAR_CONFIG
from tests.test_cli import assert_one_error_line, run_main


def wrapped(inner: BaseException) -> BaseException:
    """``inner`` two layers down, as SQLAlchemy and MLflow raise it."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("(sqlalchemy.exc.OperationalError) wrapped") from exc
    except RuntimeError as middle:
        try:
            raise ValueError("MlflowException-like: no cause, only a context")
        except ValueError as outer:
            assert outer.__context__ is middle
            return outer


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/x/artifacts/1/a.png"), "disk full"),
        (OSError(errno.EFBIG, "File too large", "/x/mlflow.db"), "file too large"),
        (sqlite3.OperationalError("database or disk is full"), "disk full writing"),
        (sqlite3.OperationalError("disk I/O error"), "write failed"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only database"),
        # MLflow applying its migrations again to a store whose creation or upgrade stopped part-way
        (sqlite3.OperationalError("table model_version_tags already exists"), "stopped part-way"),
        (sqlite3.OperationalError("duplicate column name: client_request_id"), "stopped part-way"),
        (
            RuntimeError("Detected out-of-date database schema (found version ffffffffffff, but expected 0a1b2c3d)"),
            "has MLflow schema ffffffffffff, and this MLflow expects 0a1b2c3d: another MLflow version wrote it",
        ),
    ],
)
def test_storage_failures_are_recognised_through_their_wrappers(inner: BaseException, expected: str) -> None:
    error = storage_error(wrapped(inner))
    assert error is not None and expected in str(error)
    if isinstance(inner, OSError):
        assert f"writing {inner.filename}; free space or point --tracking.uri elsewhere" in str(error)


def test_other_errors_are_not_storage_errors(tracking_uri: str) -> None:
    assert storage_error(wrapped(ValueError("bad value"))) is None
    check_store(tracking_uri)  # the session's store (a new one costs seconds of schema migrations)
    elsewhere = OSError(errno.EACCES, "Permission denied", "/etc/shadow")  # a permission error outside the store
    assert storage_error(wrapped(elsewhere)) is None
    store = Path(tracking_uri.removeprefix("sqlite:///")).parent
    inside = OSError(errno.EACCES, "Permission denied", str(store / "artifacts" / "x"))
    assert "cannot write" in str(storage_error(wrapped(inside)))


def test_the_cli_prints_a_failed_artifact_write_in_one_line(monkeypatch, capsys) -> None:
    def full_disk(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/proj/mlruns/artifacts/1/config.yaml")

    monkeypatch.setattr("lit_d2l.fit.run.run_lightning", full_disk)
    code, _, err = run_main(["fit", "--config", str(LINEAR_CONFIG)], capsys)
    assert_one_error_line(code, err, r"disk full \(No space left on device\) writing /proj/mlruns/artifacts/1/config")


def test_other_exceptions_still_raise(monkeypatch) -> None:
    def bug(*args: object) -> int:
        raise ZeroDivisionError("a bug, not the user's")

    monkeypatch.setattr("lit_d2l.fit.run.run_lightning", bug)
    with pytest.raises(ZeroDivisionError):
        main(["fit"])


def test_mlflow_tracebacks_of_storage_failures_are_dropped_and_others_kept(tracking_uri: str) -> None:
    """The filter sits where MLflow's records are handled: any module under ``mlflow`` is covered."""
    import logging

    check_store(tracking_uri)  # installs the filter, as every command that writes does
    handlers = list(logging.getLogger("mlflow").handlers)
    assert handlers, "MLflow's import gives its package logger a handler"
    record_of = logging.getLogger("mlflow.any.module").makeRecord

    def passes(exc: BaseException) -> bool:
        info = (type(exc), exc, None)
        record = record_of("mlflow.any.module", logging.ERROR, __file__, 1, "database error", (), info)
        return all(handler.filter(record) for handler in handlers)

    assert not passes(wrapped(sqlite3.OperationalError("database or disk is full")))
    assert passes(wrapped(ValueError("an unrelated failure")))
