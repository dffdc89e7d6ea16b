"""``lit-d2l ui``: the MLflow dashboard on 127.0.0.1, reading the project's tracking store."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import socket
import subprocess
import sys
import time
import urllib.request

from lit_d2l.errors import UserError
from lit_d2l.processes import interrupts
from lit_d2l.processes.guard import die_with_parent, guarded, stop_process_group
from lit_d2l.tracking.liveness import close_stale_in
from lit_d2l.tracking.runs import dashboard_links
from lit_d2l.tracking.store import artifact_root, check_store, resolve_tracking_uri

__all__ = ["MODEL_TRAINING_HINT", "check_port", "serve"]

MODEL_TRAINING_HINT = 'runs, metrics and reports: pick "Model training" at the top of the sidebar (once per browser)'


def serve(args: argparse.Namespace, rest: list[str]) -> int:
    """Start a lean MLflow server on the store; once it answers, print where to look; runs until Ctrl-C."""
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UserError(f"{uri} is already a tracking server: open it in a browser instead of running lit-d2l ui")
    check_port(args.host, args.port)
    check_store(uri)
    close_stale_in(uri)  # the dashboard shows runs of killed processes as KILLED, not RUNNING
    # One worker and no job runner (MLflow's GenAI jobs): one process, up in seconds, not a dozen.
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--workers", "1"]
    command += ["--uvicorn-opts", "--log-level warning"]  # no line per request; errors still show
    command += ["--host", args.host, "--port", str(args.port)]
    root = artifact_root(uri)
    if root:
        command += ["--default-artifact-root", root]
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Deprecations inside the server's own libraries (starlette's, as MLflow imports it) are not the user's to fix.
    environment.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore:::mlflow.server.fastapi_app")
    address = f"http://{args.host}:{args.port}"
    print(f"starting the MLflow dashboard for {uri} ...", flush=True)
    # The server runs under a guard in a session of its own: stopping lit-d2l (Ctrl-C or SIGTERM) stops
    # the guard's group, and the guard stops the server's, also when lit-d2l is killed outright.
    server = subprocess.Popen(
        guarded(command),
        env=environment,
        start_new_session=True,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),
    )
    # A stop (Ctrl-C, SIGTERM, SIGHUP) is only noted, and acted on between two polls: raised from the signal
    # handler it could land in a finalizer, where Python prints "Exception ignored" and the dashboard stays up.
    with interrupts.deferred():
        code = None  # the server's exit status, once it has exited
        try:
            if not answering(server, address):
                code = server.poll()
                if code is not None:
                    raise UserError(f"the MLflow server exited ({code}) before answering at {address}")
            else:
                print(f"MLflow dashboard at {address} (Ctrl-C to stop)", flush=True)
                for line in dashboard_links(uri, address):
                    print(line, flush=True)
                # MLflow 3.17's sidebar chooses GenAI or Model training for every experiment (the experiment's
                # mlflow.experimentKind tag no longer decides); the browser remembers the choice.
                print(MODEL_TRAINING_HINT, flush=True)
            while code is None and interrupts.requested() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = server.wait(timeout=0.5)
        except KeyboardInterrupt:  # no lit-d2l handler installed (a library caller): Ctrl-C as Python raises it
            pass
        finally:
            if code is None:  # stopped by the user, or an error: the server goes too
                stop_process_group(server, grace_s=15.0)
    interrupts.take_requested()
    return 0 if code is None else code


def answering(server: subprocess.Popen, address: str) -> bool:
    """Wait until the server answers ``/health`` (True), or exits or a stop is noted (False)."""
    while server.poll() is None and interrupts.requested() is None:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def check_port(host: str, port: int) -> None:
    """Raise :class:`UserError` unless ``host:port`` can be listened on (as uvicorn does, with SO_REUSEADDR)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} is in use; pick another with --port") from None
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --host or --port"
        ) from None
