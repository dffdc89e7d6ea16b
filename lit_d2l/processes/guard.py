"""Run a command as its own process group that goes down with this process.

``python -m lit_d2l.processes.guard CMD ...``.

``lit-d2l ui`` starts MLflow's server this way. The server starts uvicorn workers and job consumers
of its own; if ``lit-d2l ui`` were killed with SIGKILL they would all live on, holding the port.
The guard gets SIGTERM when its parent dies (Linux: ``PR_SET_PDEATHSIG``) and stops the group.
Standard library only, so that the guard starts in a moment.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any

_PR_SET_PDEATHSIG = 1


def guarded(command: list[str]) -> list[str]:
    """``command`` run under the guard."""
    return [sys.executable, "-m", "lit_d2l.processes.guard", *command]


def parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send this process ``signum`` when its parent dies; True where it will (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    return False


def die_with_parent(parent: int) -> None:
    """For ``preexec_fn``: SIGTERM this process when ``parent`` dies (Linux only; elsewhere nothing)."""
    if parent_death_signal() and os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


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
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class _Stop(Exception):
    """A stop signal (SIGTERM, SIGINT, SIGHUP) reached the guard."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


def main(command: list[str]) -> int:
    """Run ``command`` in a group of its own until it ends, or stop the group when told to."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    child = None
    stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    try:
        # Held back while the child starts, so that a stop never finds it started but unknown.
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            child = subprocess.Popen(
                command, start_new_session=True, preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
            )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return child.wait()
    except _Stop:
        for signum in stops:
            signal.signal(signum, signal.SIG_IGN)
        if child is not None:
            stop_process_group(child)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
