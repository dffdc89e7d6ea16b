"""Where runs are stored: the tracking URI, its artifact root, and a pre-flight check.

The check runs before a run is created, so a store that cannot be used fails in one clear
line instead of deep inside MLflow (or after minutes of HTTP retries).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from lit_d2l.errors import TrackingError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
_SQLITE_PREFIX = "sqlite:///"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    return Path(uri[len(_SQLITE_PREFIX) :].split("?", 1)[0])


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live in ``artifacts/`` beside the database; a server decides its own."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "artifacts").resolve().as_uri()


def check_store(uri: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless the store at ``uri`` can be written (SQLite) or reached (HTTP)."""
    db = sqlite_path(uri)
    if db is not None:
        _check_writable_dir(db.parent, uri)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri, timeout_s)
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking store {uri!r} is a plain file store, which MLflow >= 3.13 refuses; "
            f"use a database such as {DEFAULT_TRACKING_URI!r}"
        )


def _check_writable_dir(directory: Path, uri: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "artifacts").mkdir(exist_ok=True)
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
