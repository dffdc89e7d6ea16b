"""Small, valid Fashion-MNIST-format files and a local HTTP server to download them from."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from lit_d2l.data.fashion_mnist import FILES
from tests.data.idx_files import write_idx


def make_fashion_files(directory: Path, num_train: int = 600, num_test: int = 100, seed: int = 0) -> dict[str, str]:
    """Write the four files (gzip IDX) with random images and balanced labels; return {file name: MD5}."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(num_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(num_test, dtype=np.uint8) % 10,
    }
    checksums = {}
    for key, (name, _) in FILES.items():
        write_idx(directory / name, arrays[key])
        checksums[name] = hashlib.md5((directory / name).read_bytes()).hexdigest()
    return checksums


@dataclass
class FileServer:
    """Serves files from a directory on 127.0.0.1; `truncate` names files sent cut short."""

    directory: Path
    truncate: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    url: str = ""


@contextmanager
def serve(directory: Path) -> Iterator[FileServer]:
    state = FileServer(directory)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            state.requests.append(name)
            path = state.directory / name
            if not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if name in state.truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    # A short poll: shutdown() waits up to one poll interval (0.5 s by default, at the end of every test).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def stalling_server(behaviour: str, interval_s: float = 0.2, give_up_s: float = 10.0) -> Iterator[str]:
    """A server on 127.0.0.1 that does not finish an answer; yields its base URL.

    ``silent``: accepts connections and sends nothing. ``trickle``: sends the headers of a 1 MB
    file, then one byte every ``interval_s``. ``trickle-headers``: sends its header lines one
    byte every ``interval_s``, never reaching the body. After ``give_up_s`` it hangs up, so a
    client without a deadline fails a test instead of hanging it.
    """
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)

    def answer(conn: socket.socket) -> None:
        end = time.monotonic() + give_up_s
        with conn:
            if behaviour == "trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            pending = b"HTTP/1.1 200 OK\r\nX-Slow: " if behaviour == "trickle-headers" else b""
            while not stop.wait(interval_s) and time.monotonic() < end:
                if behaviour == "silent":
                    continue
                byte, pending = (pending[:1], pending[1:]) if pending else (b"x", b"")
                try:
                    conn.sendall(byte)
                except OSError:  # the client gave up
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join()
        listener.close()
