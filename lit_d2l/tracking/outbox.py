"""Writes to a tracking server that may be away for a while: a fit never waits on it for more than a few
seconds, and no value is lost.

A flush hands its values to a writer thread and waits :data:`WAIT_S` at most; during an outage it does not
wait at all, and the values stay here, and in a file beside the run's checkpoints, so a stop or a crash keeps
them and ``lit-d2l fit --resume`` writes them first. The writes are MLflow's own, with MLflow's HTTP
settings (``MLFLOW_HTTP_REQUEST_TIMEOUT``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ...) left as the user set
them. A write stuck in MLflow's retries is tried again beside it every :data:`RETRY_S`: the server's store
takes a metric value it already holds (same key, step, time and value) once, as it does for MLflow's own
retries of a request it answered too late.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

# MLflow's log_batch limits per call (1,000 metrics, 100 params, 100 tags, 1,000 values in all), as it checks them.
from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from lit_d2l.errors import ConfigError
from lit_d2l.tracking.liveness import HEARTBEAT_TAG
from lit_d2l.tracking.write_errors import unreachable

#: The longest a flush waits for the server before training goes on without it.
WAIT_S = 5.0
#: How often a write stuck in MLflow's own retries is tried again beside it, and how many at once.
RETRY_S = 10.0
MAX_ATTEMPTS = 3
#: How long the server may be unreachable before a fit stops (checkpoint and resume line); $LIT_D2L_SERVER_TIMEOUT_S.
SERVER_TIMEOUT_S = 120.0
#: The most values kept in memory while the server is away (a fit stops there too).
MAX_VALUES = 500_000


def server_timeout_s(setting: float | None = None) -> float:
    """The configured outage limit: the setting, else $LIT_D2L_SERVER_TIMEOUT_S, else :data:`SERVER_TIMEOUT_S`."""
    raw = setting if setting is not None else os.environ.get("LIT_D2L_SERVER_TIMEOUT_S", SERVER_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        where = "tracking.server_timeout_s" if setting is not None else "$LIT_D2L_SERVER_TIMEOUT_S"
        raise ConfigError(f"{where} must be a number of seconds > 0, got {raw!r}")
    return value


@dataclass(eq=False)  # batches are told apart by identity: two attempts may hold the same one
class Batch:
    """Values for one ``log_batch`` call."""

    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)
    kept: bool = False  # already in the keep file

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def to_json(self) -> str:
        metrics = [[m.key, m.value, m.timestamp, m.step] for m in self.metrics]
        params, tags = [[p.key, p.value] for p in self.params], [[t.key, t.value] for t in self.tags]
        return json.dumps({"metrics": metrics, "params": params, "tags": tags})

    @classmethod
    def from_json(cls, line: str) -> Batch:
        data = json.loads(line)
        return cls(
            [Metric(*m) for m in data["metrics"]],
            [Param(*p) for p in data["params"]],
            [RunTag(*t) for t in data["tags"]],
            kept=True,
        )


def batches(params: list[Param], tags: list[RunTag], metrics: list[Metric]) -> list[Batch]:
    """The values as the fewest ``log_batch`` calls MLflow's per-call limits allow: each call takes up to 100
    params and 100 tags, and fills the rest of its 1,000 values with metrics (params and tags go first)."""
    calls: list[Batch] = []
    p = t = m = 0
    while p < len(params) or t < len(tags) or m < len(metrics):
        call_params = params[p : p + MAX_PARAMS_TAGS_PER_BATCH]
        call_tags = tags[t : t + MAX_PARAMS_TAGS_PER_BATCH]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(call_params) - len(call_tags))
        call_metrics = metrics[m : m + room]
        calls.append(Batch(params=call_params, tags=call_tags, metrics=call_metrics))
        p, t, m = p + len(call_params), t + len(call_tags), m + len(call_metrics)
    return calls


class Outbox:
    """The values of one run on their way to a tracking server, kept until the server has them."""

    def __init__(self, client: MlflowClient, run_id: str, server: str, keep_file: Path, limit_s: float) -> None:
        self._client, self._run_id, self._server = client, run_id, server
        self.keep_file, self.limit_s = keep_file, limit_s
        self._lock = threading.Lock()
        self._pending: list[Batch] = []
        self._attempts: list[_Attempt] = []  # live ones, and finished ones not looked at yet
        self._newest: _Attempt | None = None
        self._answered = 0.0  # when a write last reached the server (time.monotonic())
        self._since: float | None = None  # when the outage began (time.time())
        self._why = ""
        self._ended = False  # ... and stored

    def put(self, calls: list[Batch]) -> None:
        with self._lock:
            self._pending += calls

    def restore(self) -> list[Batch]:
        """Queue the values a stopped process kept in :attr:`keep_file` (written first); returns them."""
        if not self.keep_file.is_file():
            return []
        restored = []
        for line in self.keep_file.read_text(encoding="utf-8").splitlines():
            try:
                restored.append(Batch.from_json(line))
            except (ValueError, KeyError, TypeError):  # a line cut short by a kill: its values were not kept
                continue
        with self._lock:
            self._pending = restored + self._pending
        return restored

    @property
    def away(self) -> bool:
        """Whether the server has stopped answering (an outage that has not ended)."""
        return self._since is not None

    @property
    def values_waiting(self) -> int:
        with self._lock:
            return sum(len(batch) for batch in self._pending)

    def send(self) -> None:
        """Write what is pending: wait :data:`WAIT_S` at most, not at all while the server is away."""
        attempt = self._start()
        if attempt is not None and self._since is None:
            attempt.join(WAIT_S)
        self._settle()

    def close(self, terminate: Callable[[], None], patient: bool) -> bool:
        """Write what is pending, then ``terminate`` (the run's end status); True once both are stored.

        Waits :data:`WAIT_S` at most (not at all while the server is away), or if ``patient`` until the server
        has been away for longer than the limit. A stop signal cuts the wait short; nothing is lost meanwhile.
        The end status goes only to a server that answers, after every value: sent into an outage, it could
        reach the server after this process is gone and close the run before the values kept here are stored.
        """
        self._ended = False

        def end() -> None:
            terminate()
            self._ended = True

        deadline = time.monotonic() + (0.0 if self._since is not None else WAIT_S)
        try:
            while True:
                if self._since is None and not self._pending:
                    if not any(a.then is not None and a.is_alive() for a in self._attempts):
                        self._start(then=end)
                elif self._may_start():
                    if not self._pending:  # a harmless write that tells when the server is back
                        self.put([Batch(tags=[RunTag(HEARTBEAT_TAG, str(int(time.time())))])])
                    self._start()
                newest = self._newest
                wait = 0.5 if patient else max(0.0, min(0.5, deadline - time.monotonic()))
                if newest is not None and newest.is_alive():
                    newest.join(wait)
                else:
                    time.sleep(min(wait, 0.2))
                self._settle()
                if self._ended:
                    return True
                if time.monotonic() >= deadline and (not patient or self.overdue() is not None):
                    return False
        finally:
            self._keep()

    def overdue(self) -> str | None:
        """Why the run cannot wait for the server any longer (away past the limit, too many values kept), else None."""
        if self._since is None:
            return None
        away = time.time() - self._since
        if away > self.limit_s:
            return f"tracking server {self._server} unreachable for {away:.0f} s (limit {self.limit_s:g} s)"
        waiting = self.values_waiting
        if waiting > MAX_VALUES:
            return f"tracking server {self._server} unreachable with {waiting} values waiting (at most {MAX_VALUES})"
        return None

    def _start(self, then: Callable[[], None] | None = None) -> _Attempt | None:
        """A new write attempt, if :meth:`_may_start`."""
        if (not self._pending and then is None) or not self._may_start():
            return None
        with self._lock:
            attempt = _Attempt(self, list(self._pending), then)
        self._attempts.append(attempt)
        self._newest = attempt
        attempt.start()
        return attempt

    def _may_start(self) -> bool:
        """No new attempt while one is on its way or failed less than :data:`RETRY_S` ago, nor past MAX_ATTEMPTS."""
        newest = self._newest
        if newest is None or not (newest.is_alive() or newest.error is not None):
            return sum(a.is_alive() for a in self._attempts) < MAX_ATTEMPTS
        return time.monotonic() - newest.started >= RETRY_S and sum(a.is_alive() for a in self._attempts) < MAX_ATTEMPTS

    def _write(self, attempt: _Attempt) -> None:
        for batch in attempt.batches:
            with self._lock:
                if not any(b is batch for b in self._pending):  # another attempt stored it
                    continue
            try:
                self._client.log_batch(self._run_id, metrics=batch.metrics, params=batch.params, tags=batch.tags)
            except Exception as exc:
                attempt.error, attempt.failed = exc, batch
                return
            with self._lock:
                self._pending = [b for b in self._pending if b is not batch]
        if attempt.then is not None:
            try:
                attempt.then()
            except Exception as exc:
                attempt.error = exc

    def _settle(self) -> None:
        """Say when the outage starts and ends (one line each), keep its values in the file; raise a write the
        server refused (it answered: retrying will not help, and those values are dropped)."""
        finished = [a for a in self._attempts if not a.is_alive()]
        self._attempts = [a for a in self._attempts if a.is_alive()]
        answered = failed = False
        for attempt in finished:
            if attempt.error is None:
                answered, self._answered = True, time.monotonic()
                continue
            why = unreachable(attempt.error)
            if why is None:
                with self._lock:
                    self._pending = [b for b in self._pending if b is not attempt.failed]
                raise attempt.error
            self._why, failed = why, True
        waiting = self.values_waiting
        # Writes started before the server last answered may still sit in MLflow's back-off: not a new outage.
        hanging = [a for a in self._attempts if a.started >= self._answered and time.monotonic() - a.started >= WAIT_S]
        ending = any(a.then is not None for a in [*finished, *hanging] if a.error is not None or a.is_alive())
        if self._since is None and (waiting or ending) and (failed or hanging):
            self._since = min((a.wall_started for a in [*finished, *hanging]), default=time.time())
            why = self._why or f"no answer in {WAIT_S:g} s"
            clock = time.strftime("%H:%M:%S", time.localtime(self._since))
            _say(f"tracking server {self._server} unreachable since {clock} ({why}); {waiting} values kept, retrying")
        elif self._since is not None and answered and not failed:  # the values kept follow at once
            _say(f"tracking server {self._server} is back after {time.time() - self._since:.0f} s")
            self._since, self._why = None, ""
        if self._since is not None:
            self._keep()
        elif not self._pending or not any(batch.kept for batch in self._pending):
            self.keep_file.unlink(missing_ok=True)  # (a stop now would lose no kept value: none is waiting)

    def _keep(self) -> None:
        """Append the pending values not yet in the keep file to it (only while the server is away)."""
        with self._lock:
            new = [batch for batch in self._pending if not batch.kept]
        if not new or self._since is None:
            return
        self.keep_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.keep_file, "a", encoding="utf-8") as f:
            f.write("".join(batch.to_json() + "\n" for batch in new))
            f.flush()
            os.fsync(f.fileno())
        for batch in new:
            batch.kept = True


class _Attempt(threading.Thread):
    """One pass over the pending values, in a daemon thread: a process may exit with it still waiting on the server."""

    def __init__(self, outbox: Outbox, batches: list[Batch], then: Callable[[], None] | None) -> None:
        super().__init__(name="lit-d2l tracking writer", daemon=True)
        self._outbox, self.batches, self.then = outbox, batches, then
        self.started, self.wall_started = time.monotonic(), time.time()
        self.error: BaseException | None = None
        self.failed: Batch | None = None

    def run(self) -> None:
        self._outbox._write(self)


def _say(line: str) -> None:
    print(f"lit-d2l: {line}", file=sys.stderr, flush=True)
