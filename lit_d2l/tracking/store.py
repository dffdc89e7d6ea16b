"""Where runs are stored: the tracking URI, its artifact root, and a pre-flight check.

The check runs before a run is created, so a store that cannot be used fails in one clear
line instead of deep inside MLflow (or after minutes of HTTP retries).
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lit_d2l.errors import TrackingError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first runs there are not serialized
    fcntl = None  # type: ignore[assignment]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
_SQLITE_PREFIX = "sqlite:///"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CHOOSE_ANOTHER = "choose another store with --tracking.uri or MLFLOW_TRACKING_URI"
_checked_database: Path | None = None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def store_option(uri: str, flag: str = "--tracking-uri") -> str:
    """`` FLAG URI`` when ``uri`` is not the store a command would use by default here, else ``""``: what a
    printed follow-up command needs to reach the same store."""
    return "" if uri == resolve_tracking_uri() else f" {flag} {uri}"


def dashboard_hint(uri: str) -> str:
    """How to look at runs in ``uri``: ``lit-d2l ui`` for a local store, the server's own page for a server."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"lit-d2l ui{store_option(uri)}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    return Path(uri[len(_SQLITE_PREFIX) :].split("?", 1)[0])


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live in ``artifacts/`` beside the database; a server decides its own.

    Absolute on purpose: MLflow stores every experiment's artifact location as an absolute path
    whatever it is given (a relative one is resolved against the working directory).
    """
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "artifacts").resolve().as_uri()


def checked_database() -> Path | None:
    """The SQLite file this process last checked with :func:`check_store` (where its writes go)."""
    return _checked_database


def check_store(uri: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless the store at ``uri`` can be written (SQLite) or reached (HTTP).

    A new SQLite store gets MLflow's schema here, under a file lock, so that processes starting on
    one fresh store at once do not race through MLflow's migrations.
    """
    db = sqlite_path(uri)
    if db is not None:
        _check_sqlite(db, uri)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri, timeout_s)
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking store {uri!r} is a plain file store, which MLflow >= 3.13 refuses; "
            f"use a database such as {DEFAULT_TRACKING_URI!r}"
        )


def _check_sqlite(db: Path, uri: str) -> None:
    global _checked_database
    from lit_d2l.tracking.write_errors import quiet_storage_tracebacks

    quiet_storage_tracebacks()  # this process writes to the store from here on
    _check_writable_dir(db.parent, uri)
    _check_writable_dir(db.parent / "artifacts", uri)
    with _creation_lock(db):
        if db.is_dir():
            raise TrackingError(f"the tracking database {db} is a directory; move it aside, or {_CHOOSE_ANOTHER}")
        if _has_tables(db, uri):
            _checked_database = db
            return
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)  # MLflow creates its schema
    _checked_database = db


def _has_tables(db: Path, uri: str) -> bool:
    """Whether ``db`` holds a database with tables, after checking it can be opened, read and written."""
    try:
        with open(db, "r+b") as file:  # opened for writing, changes nothing
            header, size = file.read(100), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TrackingError(
            f"cannot open the tracking database {db} for reading and writing ({exc.strerror}); "
            f"give yourself write access (chmod u+rw), or {_CHOOSE_ANOTHER}"
        ) from None
    if size == 0:
        return False
    if not header.startswith(_SQLITE_MAGIC):
        raise TrackingError(
            f"the tracking database {db} is not a SQLite database (corrupt or another kind of file); "
            f"move it aside (a fresh store is created in its place), or {_CHOOSE_ANOTHER}"
        )
    expected = _expected_size(header)
    if expected is not None and size < expected:
        raise TrackingError(
            f"the tracking database {db} is truncated ({size} of {expected} bytes); "
            f"restore it from a backup or move it aside, or {_CHOOSE_ANOTHER}"
        )
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            (tables,) = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True  # another process is writing it: busy, not broken
        raise TrackingError(f"cannot read the tracking database {db} ({exc}); {_CHOOSE_ANOTHER}") from None
    except sqlite3.DatabaseError as exc:
        raise _corrupt(db, exc) from None
    return tables > 0


def _expected_size(header: bytes) -> int | None:
    """The file size a SQLite header promises, where the header's page count is valid (SQLite >= 3.7)."""
    if len(header) < 100 or header[24:28] != header[92:96]:
        return None
    (page_size,) = struct.unpack(">H", header[16:18])
    (pages,) = struct.unpack(">I", header[28:32])
    return (65536 if page_size == 1 else page_size) * pages or None


def _corrupt(db: Path, exc: Exception) -> TrackingError:
    return TrackingError(
        f"the tracking database {db} is corrupt ({exc}); restore it from a backup, try "
        f"`sqlite3 {db} .recover`, or move it aside, or {_CHOOSE_ANOTHER}"
    )


@contextmanager
def _creation_lock(db: Path, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` (where fcntl exists) while the store is checked or created."""
    if fcntl is None:
        yield
        return
    descriptor = os.open(db.with_name(db.name + ".lock"), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"another process has been creating the tracking database {db} for {timeout_s:.0f} s; "
                        f"stop it, or delete {db} and {db.name}.lock if no lit-d2l is running"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _check_writable_dir(directory: Path, uri: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A real write: os.access() says yes to root even on a read-only file system.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TrackingError(
            f"cannot write the tracking store {uri!r}: {directory} is not a writable directory ({reason}); "
            "choose another with --tracking.uri or MLFLOW_TRACKING_URI"
        ) from None


def _check_server(uri: str, timeout_s: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read(64)
    except urllib.error.HTTPError as exc:
        raise TrackingError(
            f"tracking server {uri} answered {exc.code} to {url}; check that it is an MLflow server"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"cannot reach the tracking server {uri} ({reason}); start it (lit-d2l ui / mlflow server) "
            "or point --tracking.uri / MLFLOW_TRACKING_URI at a running one"
        ) from None
