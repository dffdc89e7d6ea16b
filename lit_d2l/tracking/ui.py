"""``lit-d2l ui``: the MLflow dashboard on 127.0.0.1, reading the project's tracking store."""

from __future__ import annotations

import argparse
import subprocess
import sys

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
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
