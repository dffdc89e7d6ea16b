"""Which process owns a RUNNING run, whether it is still alive, and closing the runs whose process is gone.

Every run lit-d2l starts carries an owner tag (``host:pid:process start``) and a heartbeat tag that a
background thread refreshes while the run is open. A run whose owner is on this host is alive while
that exact process is (the start time rules out a reused pid); a run owned by another host is alive
while its heartbeat is recent. Any command that opens a store closes the others as KILLED, tagged with
how they were found, so a SIGKILL, an OOM kill or a lost node never leaves a run RUNNING for good.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `lit-d2l runs|ui --help` answers without MLflow
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

from lit_d2l.tracking.paging import all_experiments, all_runs

OWNER_TAG = "lit_d2l.owner"
HEARTBEAT_TAG = "lit_d2l.heartbeat"
STALE_TAG = "lit_d2l.closed_as_stale"
KIND_TAG = "lit_d2l.kind"
#: Prefix of the tags by which ``fit --resume`` processes claim a stopped run (lit_d2l.tracking.takeover).
TAKEOVER_PREFIX = "lit_d2l.takeover."
PARENT_TAG = "mlflow.parentRunId"

HEARTBEAT_S = 30.0
#: A run owned by another host is stale once its heartbeat is this old ($LIT_D2L_STALE_AFTER_S).
STALE_AFTER_S = 300.0


@dataclass(frozen=True)
class Owner:
    """The process that runs a run: host name, pid and the process's start time (clock ticks since boot)."""

    host: str
    pid: int
    started: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        return cls(host, int(pid), rest) if host and pid.isdigit() else None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def this_process() -> Owner:
    return Owner(socket.gethostname(), os.getpid(), _process_start(os.getpid()) or "?")


def owner_tags() -> dict[str, str]:
    """Tags that make the current process the owner of a run, with a fresh heartbeat."""
    return {OWNER_TAG: str(this_process()), HEARTBEAT_TAG: str(int(time.time()))}


def takeover_marker() -> tuple[str, str]:
    """This process's claim on a run it takes over: a tag key no other process writes, and its value
    (owner and time, so that other hosts can tell when its process is gone)."""
    me = this_process()
    key = TAKEOVER_PREFIX + re.sub(r"[^\w.\-]", "_", f"{me.pid}.{me.started}.{me.host}")
    return key, f"{me} {int(time.time())}"


def takeover_claims(tags: dict[str, str]) -> dict[str, Owner | None]:
    """The takeover claims on a run, by tag key: the claiming process, or None where it is gone."""
    claims: dict[str, Owner | None] = {}
    for key, value in tags.items():
        if key.startswith(TAKEOVER_PREFIX):
            owner, _, when = value.rpartition(" ")
            gone = owner_gone({OWNER_TAG: owner, HEARTBEAT_TAG: when}, 0)
            claims[key] = Owner.parse(owner) if gone is None else None
    return claims


def stale_reason(run: Run, now: float | None = None) -> str | None:
    """Why a RUNNING run's process is gone, or None if it may be alive (or its owner is unknown)."""
    return owner_gone(run.data.tags, run.info.start_time or 0, now)


def owner_gone(tags: dict[str, str], start_time_ms: int, now: float | None = None) -> str | None:
    """:func:`stale_reason` from a run's tags and start time."""
    owner = Owner.parse(tags.get(OWNER_TAG, ""))
    if owner is None:  # not started by lit-d2l: nothing to go on
        return None
    if owner.host == socket.gethostname():
        if not _pid_alive(owner.pid):
            return f"its process ({owner.describe()}) is gone"
        started = _process_start(owner.pid)
        if started is not None and owner.started not in ("?", started):
            return f"its process ({owner.describe()}) is gone; the pid now belongs to another process"
        return None
    limit = float(os.environ.get("LIT_D2L_STALE_AFTER_S", STALE_AFTER_S))
    beat = tags.get(HEARTBEAT_TAG)
    last = float(beat) if beat and beat.isdigit() else start_time_ms / 1000
    age = (now or time.time()) - last
    if age > limit:
        return f"no heartbeat from {owner.describe()} for {age:.0f} s (limit {limit:.0f} s)"
    return None


def close_stale_runs(
    client: MlflowClient, experiment_ids: list[str] | None = None, gone: Callable[[Run], str | None] | None = None
) -> list[tuple[Run, str]]:
    """Mark KILLED every RUNNING run whose process is gone; returns the runs closed and why.

    ``gone(run)`` may name more ways a process is known to be gone (e.g. its Ray node died). A sweep's
    parent run stays open while any of its children is alive (another process may be running arms of
    the same sweep).
    """
    from lit_d2l.tracking.races import set_tags

    ids = experiment_ids if experiment_ids is not None else [e.experiment_id for e in all_experiments(client)]
    running = all_runs(client, ids, "attributes.status = 'RUNNING'")
    closed: list[tuple[Run, str]] = []
    stale = {
        run.info.run_id: reason
        for run in running
        if (reason := stale_reason(run) or (gone(run) if gone is not None else None)) is not None
    }
    live_parents = {
        run.data.tags.get(PARENT_TAG) for run in running if run.info.run_id not in stale and PARENT_TAG in run.data.tags
    }
    me = this_process()
    for run in running:
        reason = stale.get(run.info.run_id)
        if reason is None or run.info.run_id in live_parents:
            continue
        note = f"{reason}; closed by {me.describe()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
        set_tags(client, run.info.run_id, {STALE_TAG: note})
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append((run, note))
    return closed


@functools.cache
def close_stale_in(tracking_uri: str) -> int:
    """:func:`close_stale_runs` over the store at ``tracking_uri`` (every command calls it when it opens a store):
    how many runs it closed."""
    from mlflow.tracking import MlflowClient

    return len(close_stale_runs(MlflowClient(tracking_uri)))


class Heartbeat:
    """A daemon thread that refreshes a run's heartbeat tag until stopped."""

    def __init__(self, tracking_uri: str, run_id: str, every_s: float = HEARTBEAT_S) -> None:
        from mlflow.tracking import MlflowClient

        self._client, self._run_id, self._every_s = MlflowClient(tracking_uri), run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lit-d2l heartbeat {run_id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._client.set_tag(self._run_id, HEARTBEAT_TAG, str(int(time.time())))
            except Exception:  # a busy or unreachable store: the next beat tries again
                continue

    def stop(self) -> None:
        self._stop.set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return (_proc_stat(pid) or ["?"])[0] != "Z"  # a zombie has exited


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields after the command name, which may hold spaces


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); None where /proc is missing."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None
