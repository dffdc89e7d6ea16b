"""Where runs are stored: the tracking URI, its artifact root, and a pre-flight check.

The check runs before a run is created, so a store that cannot be used fails in one clear
line instead of deep inside MLflow (or after minutes of HTTP retries).
"""

from __future__ import annotations

import difflib
import functools
import glob
import os
import shlex
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
from lit_d2l.processes.interrupts import shielded
from lit_d2l.processes.quiet import at_warning

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first runs there are not serialized
    fcntl = None  # type: ignore[assignment]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
_SQLITE_PREFIX = "sqlite:///"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CHOOSE_ANOTHER = "choose another store with --tracking.uri or MLFLOW_TRACKING_URI"
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")  # MLflow's own stores
_checked_database: Path | None = None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def store_option(uri: str, flag: str = "--tracking-uri") -> str:
    """`` FLAG URI`` when ``uri`` is not the store a command would use by default here, else ``""``: what a
    printed follow-up command needs to reach the same store."""
    return "" if uri == resolve_tracking_uri() else f" {flag} {shlex.quote(uri)}"


def dashboard_hint(uri: str) -> str:
    """How to look at runs in ``uri``: ``lit-d2l ui`` for a local store, the server's own page for a server."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"lit-d2l ui{store_option(uri)}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    return Path(uri[len(_SQLITE_PREFIX) :].split("?", 1)[0]) if uri.startswith(_SQLITE_PREFIX) else None


def in_memory(uri: str) -> bool:
    """Whether ``uri`` is a SQLite database held in memory (gone with the process)."""
    db = sqlite_path(uri)
    return db is not None and (":memory:" in db.name or "mode=memory" in uri)


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live in ``artifacts/`` beside the database; a server decides its own.

    Absolute on purpose: MLflow stores every experiment's artifact location as an absolute path
    whatever it is given (a relative one is resolved against the working directory).
    """
    db = sqlite_path(uri)
    return None if db is None else (db.parent / "artifacts").resolve().as_uri()


def checked_database() -> Path | None:
    """The SQLite file this process last checked with :func:`check_store` (where its writes go)."""
    return _checked_database


def check_store(uri: str, timeout_s: float = 5.0, *, create: bool = True, write: bool = True) -> None:
    """Raise :class:`TrackingError` unless the store at ``uri`` can be written (SQLite) or reached (HTTP).

    A new SQLite store gets its folders and MLflow's schema here (``create``), under a file lock, so that
    processes starting on one fresh store at once do not race through MLflow's migrations. With
    ``create=False`` nothing is made, so input found bad afterwards leaves no empty store behind; with
    ``write=False`` (commands that only read) a read-only store passes and a missing one is an error.
    """
    db = sqlite_path(uri)
    if in_memory(uri):
        raise TrackingError(
            f"tracking store {uri!r} is an in-memory database, which keeps nothing once the process ends; "
            f"use a file such as {DEFAULT_TRACKING_URI!r}"
        )
    if db is not None:
        _check_sqlite(db, uri, create=create and write, write=write)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri, timeout_s)
    elif uri.startswith("sqlite:"):  # sqlite:/x.db, sqlite://x.db, sqlite:// (in memory: gone with the process)
        raise TrackingError(
            f"tracking store {uri!r} names no SQLite file; write sqlite:///relative/path.db (three slashes) "
            "or sqlite:////absolute/path.db (four)"
        )
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking store {uri!r} is a plain file store, which MLflow >= 3.13 refuses; "
            f"use a database such as {DEFAULT_TRACKING_URI!r}"
        )
    else:  # another database (postgresql://, mysql://), a plugin's scheme, or a misspelt one: MLflow says
        _check_other(uri)


@functools.cache  # once a process: every run's start checks its store
def _check_other(uri: str) -> None:
    """Open the store as MLflow would and read one experiment; why it cannot, as one line (an unknown
    scheme, the database's Python driver missing, a database that does not answer)."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        scheme = uri.split("://", 1)[0]
        if isinstance(exc, ImportError):
            reason = f"{reason} (install the database's Python driver)"
        elif "unsupported URI" in reason:  # MLflow's list of schemes, and a link, on one long line
            reason = f"MLflow has no store of scheme {scheme!r}"
        base = scheme.split("+", 1)[0]  # postgresql+psycopg2: a database and its driver
        close = [] if base in _SCHEMES else difflib.get_close_matches(base.lower(), _SCHEMES, n=1)
        reason += f" (did you mean {close[0]}?)" if close else ""
        raise TrackingError(f"tracking store {uri!r} cannot be used: {reason}; {_CHOOSE_ANOTHER}") from None


def store_writable(uri: str) -> bool:
    """Whether :func:`check_store` finds the store writable (a read-only one is still checked for reading)."""
    try:
        check_store(uri)
    except TrackingError:
        check_store(uri, write=False)
        return False
    return True


def holds_nothing(db: Path) -> bool:
    """Whether SQLite file ``db`` is missing or empty (0 bytes, say made by ``touch``): nothing is recorded there,
    and a command that only reads makes no store to say so."""
    return not db.exists() or (db.is_file() and db.stat().st_size == 0)


def _check_sqlite(db: Path, uri: str, create: bool, write: bool) -> None:
    global _checked_database
    from lit_d2l.tracking.write_errors import quiet_storage_tracebacks

    quiet_storage_tracebacks()  # this process writes to the store from here on
    if db.is_dir():
        raise TrackingError(f"the tracking database {db} is a directory; move it aside, or {_CHOOSE_ANOTHER}")
    if not write and holds_nothing(db):
        raise TrackingError(f"there is no tracking store at {db} (nothing recorded yet); {_CHOOSE_ANOTHER}")
    if write:
        _check_writable_dir(db.parent, uri, create)
        _check_writable_dir(db.parent / "artifacts", uri, create)
    if _open_in_this_process(db):
        # Closing any descriptor of the file would drop the locks this process's MLflow holds on it
        # (SQLite's "closing a file releases all locks" hazard): only what stat can tell is checked.
        if not os.access(db, os.R_OK | os.W_OK if write else os.R_OK):
            raise _no_access(db, write)
        _checked_database = db
        return
    if not create:
        _has_tables(db, write)
        return
    with _creation_lock(db):
        if not _has_tables(db, write):
            _create(db)
    _checked_database = db


def _create(db: Path) -> None:
    """MLflow's schema, built in a file beside ``db`` and moved into place once complete.

    SQLite runs MLflow's migrations outside transactions, so a stop, a kill or a full disk part-way through them
    would leave a store every later command fails on. Only the creator holding the lock runs this: a file left by a
    creator that was killed is deleted. A stop signal takes effect once the store is in place.
    """
    from mlflow.tracking import MlflowClient

    for left in db.parent.glob(f".{glob.escape(db.name)}.creating-*"):
        left.unlink(missing_ok=True)
    building = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        with shielded(), at_warning("mlflow", "alembic"):
            MlflowClient(f"sqlite:///{building}").search_experiments(max_results=1)  # MLflow creates its schema
            os.replace(building, db)
    finally:
        building.unlink(missing_ok=True)


def _open_in_this_process(db: Path) -> bool:
    """Whether this process holds a descriptor of ``db`` (Linux's /proc/self/fd); without /proc, whether this
    process checked it before (its MLflow client opens it right after a check)."""
    try:
        target = os.stat(db)
    except OSError:
        return False
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return _checked_database is not None and _checked_database.resolve() == db.resolve()
    for descriptor in descriptors:
        try:
            held = os.stat(f"/proc/self/fd/{descriptor}")
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
        if (held.st_dev, held.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _no_access(db: Path, write: bool, reason: str = "permission denied") -> TrackingError:
    access, fix = ("reading and writing", "u+rw") if write else ("reading", "u+r")
    return TrackingError(
        f"cannot open the tracking database {db} for {access} ({reason}); "
        f"give yourself access (chmod {fix}), or {_CHOOSE_ANOTHER}"
    )


def _has_tables(db: Path, write: bool = True) -> bool:
    """Whether ``db`` holds a database with tables, after checking it can be opened, read and (``write``) written.

    Only for a file this process has not opened otherwise: see :func:`_open_in_this_process`.
    """
    try:
        with open(db, "r+b" if write else "rb") as file:  # opened for writing (if asked), changes nothing
            header, size = file.read(100), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _no_access(db, write, exc.strerror or type(exc).__name__) from None
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
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            _check_schema(db, connection, tables)
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True  # another process is writing it: busy, not broken
        raise TrackingError(f"cannot read the tracking database {db} ({exc}); {_CHOOSE_ANOTHER}") from None
    except sqlite3.DatabaseError as exc:
        raise TrackingError(
            f"the tracking database {db} is corrupt ({exc}); restore it from a backup, try "
            f"`sqlite3 {db} .recover`, or move it aside, or {_CHOOSE_ANOTHER}"
        ) from None
    return bool(tables)


def _check_schema(db: Path, connection: sqlite3.Connection, tables: set[str]) -> None:
    """Refuse a database with tables but no complete MLflow schema: another program's, or one whose creation (or
    upgrade) stopped part-way, which MLflow cannot open and would fail on with a traceback."""
    if not tables:
        return
    if "experiments" not in tables:
        raise TrackingError(
            f"the tracking database {db} is another program's SQLite database (it has no MLflow tables); "
            f"nothing was written to it: {_CHOOSE_ANOTHER}"
        )
    versions = (
        connection.execute("SELECT version_num FROM alembic_version").fetchall() if "alembic_version" in tables else []
    )
    if len(versions) != 1 or any(name.startswith("_alembic_tmp_") for name in tables):
        runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        raise TrackingError(
            f"the tracking database {db} holds an MLflow schema whose creation or upgrade stopped part-way "
            f"({runs} runs in it); "
            + ("move it aside (a fresh store is made in its place)" if not runs else "restore it from a backup")
            + f", or {_CHOOSE_ANOTHER}"
        )


def _expected_size(header: bytes) -> int | None:
    """The file size a SQLite header promises, where the header's page count is valid (SQLite >= 3.7)."""
    if len(header) < 100 or header[24:28] != header[92:96]:
        return None
    (page_size,) = struct.unpack(">H", header[16:18])
    (pages,) = struct.unpack(">I", header[28:32])
    return (65536 if page_size == 1 else page_size) * pages or None


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


def _check_writable_dir(directory: Path, uri: str, create: bool) -> None:
    """``directory`` is (``create``: made) a writable directory; without ``create``, its nearest existing
    ancestor is, so that nothing is made before the rest of a command's input is checked."""
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        else:
            while not directory.exists() and directory != directory.parent:
                directory = directory.parent
            if not directory.is_dir():
                raise NotADirectoryError(20, "a file is in the way")
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
