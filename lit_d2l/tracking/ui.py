"""``lit-d2l ui``: the MLflow dashboard on 127.0.0.1, reading the project's tracking store."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

from lit_d2l.errors import UserError
from lit_d2l.tracking.store import artifact_root, check_store, resolve_tracking_uri


def serve(argv: list[str]) -> int:
    """Start ``mlflow ui`` on the store and print its URL; runs until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="lit-d2l ui", description="Open the MLflow dashboard.")
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--tracking-uri", default=None, help="store to show (default: the project's)")
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UserError(f"{uri} is already a tracking server: open it in a browser instead of running lit-d2l ui")
    check_store(uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    root = artifact_root(uri)
    if root:
        command += ["--default-artifact-root", root]
    print(f"MLflow dashboard for {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    # Its own process group, so that stopping lit-d2l (Ctrl-C or SIGTERM) stops the server's workers too.
    server = subprocess.Popen(command, start_new_session=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        stop_process_group(server)
        return 0


def stop_process_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process's whole group (MLflow's server starts workers and job consumers),
    then SIGKILL whatever is still there after ``grace_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or it stays in the group as a zombie
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
