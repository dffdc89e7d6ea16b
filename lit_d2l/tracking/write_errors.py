"""Storage failures (disk full, file too large, read-only store, a schema MLflow cannot open) as one clear error.

MLflow and SQLAlchemy wrap the operating system's error two or three times over; the original
(an ``OSError`` or SQLite's message) is found by walking the exception's causes.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterator

from lit_d2l.errors import TrackingError
from lit_d2l.tracking.store import checked_database

_FIX = "free space or point --tracking.uri elsewhere"
_FULL_ERRNOS = {errno.ENOSPC: "disk full", errno.EFBIG: "file too large", errno.EDQUOT: "disk quota exceeded"}
_DENIED_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
# SQLite's messages (sqlite3 error strings, kept by SQLAlchemy and MLflow in their own messages).
_SQLITE_MESSAGES = {
    "database or disk is full": ("disk full", _FIX),
    "disk I/O error": ("write failed (disk I/O error: disk full, file size limit or failing disk)", _FIX),
    "attempt to write a readonly database": (
        "read-only database",
        "give yourself write access (chmod u+rw) or point --tracking.uri elsewhere",
    ),
    "database disk image is malformed": ("corrupt database", "restore it from a backup or move it aside"),
}


def storage_error(exc: BaseException) -> TrackingError | None:
    """The one-line :class:`TrackingError` for a write that failed for lack of space or permission, or for a store
    MLflow cannot open (another MLflow version's, or one whose migration stopped part-way), else None."""
    for link in _chain(exc):
        if _HALF_MIGRATED.search(str(link)):
            return TrackingError(
                f"{checked_database() or 'the tracking database'} holds an MLflow schema whose creation or upgrade "
                "stopped part-way (MLflow cannot apply its migrations again); restore it from a backup, or move it "
                "aside if it holds no runs you need (a fresh store is made in its place), or point --tracking.uri "
                "elsewhere"
            )
        if version := _OTHER_SCHEMA.search(str(link)):
            db = checked_database() or "the tracking database"
            return TrackingError(
                f"{db} has MLflow schema {version[1]}, and this MLflow expects {version[2]}: another MLflow version "
                f"wrote it. If that version was older, back it up and run `mlflow db upgrade sqlite:///{db}`; if "
                "newer, use that MLflow; or point --tracking.uri elsewhere"
            )
        if isinstance(link, OSError) and link.errno is not None:
            path = link.filename or checked_database() or "the tracking store"
            if link.errno in _FULL_ERRNOS:
                return TrackingError(f"{_FULL_ERRNOS[link.errno]} ({link.strerror}) writing {path}; {_FIX}")
            if link.errno in _DENIED_ERRNOS and _in_store(link.filename):
                return TrackingError(
                    f"cannot write {path} ({link.strerror}); fix its permissions or point --tracking.uri elsewhere"
                )
        message = str(link)
        for pattern, (what, fix) in _SQLITE_MESSAGES.items():
            if pattern in message:
                return TrackingError(f"{what} writing {checked_database() or 'the tracking database'}; {fix}")
    return None


#: SQLite refusing a migration's DDL: a table or column it adds is there already, from a migration that stopped.
_HALF_MIGRATED = re.compile(r"table \w+ already exists|duplicate column name")
#: MLflow's refusal of a store whose schema revision is not its own (it says "out-of-date" also for a newer one).
_OTHER_SCHEMA = re.compile(r"out-of-date database schema \(found version (\w+), but expected (\w+)\)")


def quiet_storage_tracebacks() -> None:
    """Drop MLflow's logged traceback of a failed write that :func:`storage_error` reports in one line
    (installed once, by :func:`~lit_d2l.tracking.store.check_store`).

    The filter sits on the handlers that records of MLflow's package logger reach (the standard ``logging``
    hierarchy), so it names no MLflow module: a logger's own filters would see only its own records.
    """
    import mlflow  # noqa: F401  (its import gives the "mlflow" logger its handler)

    for handler in _handlers_reached(logging.getLogger("mlflow")):
        handler.addFilter(_drop_storage_tracebacks)  # a no-op when already there


def _handlers_reached(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record logged under ``logger`` is passed to, as ``Logger.callHandlers`` walks them."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    if not handlers and logging.lastResort is not None:
        handlers.append(logging.lastResort)  # no handler on the way: logging falls back to this one
    return handlers


def _drop_storage_tracebacks(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or storage_error(exc) is None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        pending += [nested for nested in (link.__cause__, link.__context__) if nested is not None]


def _in_store(filename: str | bytes | None) -> bool:
    """Whether ``filename`` is inside the directory of the SQLite store this process checked."""
    db = checked_database()
    if db is None or not filename:
        return False
    store = os.path.realpath(db.parent)
    return os.path.realpath(os.fsdecode(filename)).startswith(store + os.sep)


def unreachable(exc: BaseException) -> str | None:
    """Why a tracking server did not take a write that it may take later (no connection, no answer, a
    gateway's 502/503/504), else None: the server answered and refused it, and retrying changes nothing."""
    import requests
    from mlflow.exceptions import MlflowException

    chain = list(_chain(exc))
    if any(isinstance(link, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)) for link in chain):
        if any(isinstance(link, (TimeoutError, requests.exceptions.Timeout)) for link in chain):
            return "no answer"
        if any(isinstance(link, ConnectionRefusedError) for link in chain):
            return "connection refused"
        return "no connection"
    for link in chain:
        if isinstance(link, MlflowException) and link.get_http_status_code() in (502, 503, 504):
            return f"HTTP {link.get_http_status_code()}"
    return None
