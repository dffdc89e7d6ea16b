"""Downloads that never leave a file which passes as valid unless its checksum matched."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from lit_d2l.errors import UserError

_CHUNK = 1 << 20


class DownloadError(UserError):
    """A file could not be fetched, or what was fetched failed its checksum."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, md5: str) -> bool:
    return path.is_file() and md5_of(path) == md5


def download(url: str, destination: Path, md5: str, timeout_s: float = 60.0) -> None:
    """Fetch ``url`` to ``destination`` unless a file with the right MD5 is already there.

    The bytes go to a temporary file in the same directory, are checked, and only then renamed
    into place, so an interrupted or corrupt transfer leaves nothing behind.
    """
    if is_valid(destination, md5):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DownloadError(
                f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {md5}); "
                "the mirror may be corrupt or the transfer damaged: try again or use another base_url"
            )
        os.replace(partial, destination)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {url} ({type(exc).__name__}: {reason})") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
