"""Downloads that never leave a file which passes as valid unless its checksum matched.

Every download has an overall deadline, enforced while reading: a mirror that trickles a byte
every few seconds or accepts the connection and never answers fails once it is spent.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lit_d2l.errors import UserError

_CHUNK = 1 << 20

#: Seconds one file may take in all: the 26 MB training images at about 90 kB/s.
DEFAULT_DEADLINE_S = 300.0
#: Seconds without a byte before a connection counts as dead (capped by the time left).
READ_TIMEOUT_S = 60.0


class DownloadError(UserError):
    """A file could not be fetched, or what was fetched failed its checksum."""


class DownloadTimeout(DownloadError):
    """A file was not fetched within its deadline."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, md5: str) -> bool:
    return path.is_file() and md5_of(path) == md5


def download(url: str, destination: Path, md5: str, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
    """Fetch ``url`` to ``destination`` unless a file with the right MD5 is already there.

    The bytes go to a hidden ``.<name>.<random>.part`` file in the same directory, are checked, and
    only then renamed into place, so an interrupted or corrupt transfer leaves nothing behind. The
    whole transfer must end within ``deadline_s`` seconds. Part files of ``destination`` older than
    that are left by killed downloads, and removed here. The file gets the mode of any new file
    (0o666 less the umask), so a shared data directory stays readable to others.
    """
    if is_valid(destination, md5):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(destination, older_than_s=deadline_s)
    partial = destination.parent / f".{destination.name}.{secrets.token_hex(8)}.part"
    deadline = _Deadline(deadline_s)
    try:
        with deadline:
            try:
                _fetch(url, partial, md5, deadline)
            except Exception:  # the timer's shutdown shows as a short or broken transfer
                if deadline.expired():
                    raise _DeadlinePassed from None
                raise
        os.replace(partial, destination)
    except _DeadlinePassed:
        raise DownloadTimeout(
            f"cannot download {url}: not finished within the {deadline_s:g} s deadline "
            f"({deadline.received} bytes received); the mirror is too slow or not answering"
        ) from None
    except TimeoutError:
        raise DownloadError(f"cannot download {url}: the server sent nothing for {READ_TIMEOUT_S:g} s") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {url} ({type(exc).__name__}: {reason})") from None
    finally:
        partial.unlink(missing_ok=True)


def remove_stale_parts(destination: Path, older_than_s: float) -> None:
    """Delete ``destination``'s part files untouched for ``older_than_s`` seconds (left by killed
    downloads); younger ones may belong to a download in progress and stay."""
    now = time.time()
    for part in destination.parent.glob(f".{glob.escape(destination.name)}.*.part"):
        try:
            if now - part.stat().st_mtime > older_than_s:
                part.unlink()
        except FileNotFoundError:  # another process cleaned it up first
            continue


def _fetch(url: str, partial: Path, md5: str, deadline: _Deadline) -> None:
    """Write ``url``'s body to ``partial``, checking its length and MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    # Created like any new file, so the kernel applies the umask (mkstemp would make it 0600).
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as out, deadline.opener().open(url, timeout=deadline.left()) as response:
        expected = response.headers.get("Content-Length")
        while True:
            deadline.shrink_timeout()
            chunk = response.read1(_CHUNK)  # what has arrived, at most one wait: time is checked between pieces
            if not chunk:
                break
            deadline.received += len(chunk)
            digest.update(chunk)
            out.write(chunk)
    received = deadline.received
    if expected is not None and expected.isdigit() and received != int(expected):
        raise DownloadError(f"cannot download {url}: the connection closed after {received} of {expected} bytes")
    if digest.hexdigest() != md5:
        raise DownloadError(
            f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {md5}); "
            "the mirror may be corrupt or the transfer damaged: try again or use another base_url"
        )


class _DeadlinePassed(Exception):
    pass


class _Deadline:
    """The time left of one download. It caps the connection's socket timeout, and when it runs out
    a timer shuts the socket down, which also stops a server that trickles its headers."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.sock: socket.socket | None = None
        self.received = 0
        self.timer = threading.Timer(seconds, self._shut_down)
        self.timer.daemon = True

    def __enter__(self) -> _Deadline:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    def left(self) -> float:
        """Seconds to wait for the next bytes: the time left, at most :data:`READ_TIMEOUT_S`."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed
        return min(READ_TIMEOUT_S, remaining)

    def expired(self) -> bool:
        return time.monotonic() >= self.end - 0.01  # a socket timeout set to the time left ends just then

    def connected(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(self.left())

    def shrink_timeout(self) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.left())

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies, redirects) with connections that hand their sockets to this deadline."""
        return urllib.request.build_opener(_Handler(self))

    def _shut_down(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class _DeadlineConnection:
    """Connects within the deadline's time left, then hands the socket to the deadline."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = self.deadline.left()
        super().connect()  # type: ignore[misc]
        self.deadline.connected(self.sock)  # type: ignore[attr-defined]


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _Handler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's handler of http:// and https:// URLs, with connections that keep to the deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPConnection, req, deadline=self.deadline)

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPSConnection, req, deadline=self.deadline)
