"""A tracking server that hangs, refuses or rejects: the outbox never blocks long, says so once, and loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from lit_d2l.errors import ConfigError
from lit_d2l.tracking import outbox as outbox_module
from lit_d2l.tracking.outbox import Batch, Outbox
from lit_d2l.tracking.write_errors import unreachable

SERVER = "http://127.0.0.1:9"


def connection_error(inner: BaseException) -> MlflowException:
    """What MLflow raises when its HTTP request gets no connection or no answer (a context, no cause)."""
    try:
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded") from inner
        except requests.exceptions.ConnectionError as exc:
            raise MlflowException(f"API request to {SERVER} failed with exception {exc}")  # noqa: B904 (MLflow's way)
    except MlflowException as outer:
        return outer


class FakeServer:
    """An MlflowClient stand-in: ``hang`` makes writes wait, ``refuse`` makes them fail as a closed port does."""

    def __init__(self) -> None:
        self.stored: list[Metric] = []
        self.params: list[Param] = []
        self.ended: str | None = None
        self.hang = threading.Event()  # set: writes wait for `released`
        self.released = threading.Event()
        self.refuse: BaseException | None = None
        self.calls = 0

    def _arrive(self) -> None:
        self.calls += 1
        if self.hang.is_set():
            self.released.wait()
        if self.refuse is not None:
            raise self.refuse

    def log_batch(self, run_id, metrics=(), params=(), tags=()) -> None:
        self._arrive()
        self.stored += [m for m in metrics if m not in self.stored]  # a SQL store keeps a value once
        self.params += params

    def set_terminated(self, run_id, status) -> None:
        self._arrive()
        self.ended = status


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "WAIT_S", 0.5)
    monkeypatch.setattr(outbox_module, "RETRY_S", 0.2)


def values(first: int, last: int) -> list[Batch]:
    return [Batch(metrics=[Metric("train/loss", step / 10, 1000 + step, step)]) for step in range(first, last)]


def make(server: FakeServer, tmp_path: Path, limit_s: float = 60.0) -> Outbox:
    return Outbox(server, "run", SERVER, tmp_path / "unstored.jsonl", limit_s)  # type: ignore[arg-type]


def test_a_hanging_server_costs_a_flush_half_a_second_once_and_every_value_arrives_once(fast, tmp_path, capsys):
    server = FakeServer()
    box = make(server, tmp_path)
    box.put(values(0, 3))
    box.send()
    assert [m.step for m in server.stored] == [0, 1, 2] and not box.keep_file.exists()

    server.hang.set()
    started = time.monotonic()
    box.put(values(3, 5))
    box.send()  # waits WAIT_S, then says the server is away
    for first in range(5, 50, 5):  # training goes on: these flushes do not wait
        box.put(values(first, first + 5))
        box.send()
    assert time.monotonic() - started < 0.5 + 2.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"tracking server {SERVER} unreachable since " in err
    assert "(no answer in 0.5 s); 2 values kept, retrying" in err
    assert box.overdue() is None
    kept = [m.step for line in box.keep_file.read_text().splitlines() for m in Batch.from_json(line).metrics]
    assert kept == list(range(3, 50))  # a stop or a crash now keeps them

    server.hang.clear()
    server.released.set()  # the server answers: the writes stuck in it, and the retries beside them, arrive
    deadline = time.monotonic() + 30
    while box.values_waiting and time.monotonic() < deadline:
        time.sleep(0.25)
        box.send()
    assert [m.step for m in server.stored] == list(range(50))
    assert f"tracking server {SERVER} is back after " in capsys.readouterr().err
    assert not box.keep_file.exists()
    assert box.close(lambda: server.set_terminated("run", "FINISHED"), patient=False)
    assert server.ended == "FINISHED"


def test_a_refusing_server_is_retried_not_hammered_and_stopped_runs_do_not_wait(fast, tmp_path, capsys):
    server = FakeServer()
    server.refuse = connection_error(ConnectionRefusedError(111, "Connection refused"))
    box = make(server, tmp_path, limit_s=0.3)
    box.put(values(0, 2))
    box.send()
    assert "(connection refused); 2 values kept, retrying" in capsys.readouterr().err
    for _ in range(5):
        box.send()  # within RETRY_S of the failed write: no new one
    assert server.calls == 1
    time.sleep(0.4)
    assert box.overdue() == f"tracking server {SERVER} unreachable for 0 s (limit 0.3 s)"
    started = time.monotonic()
    assert not box.close(lambda: server.set_terminated("run", "KILLED"), patient=False)
    assert not box.close(lambda: server.set_terminated("run", "FINISHED"), patient=True)  # already past the limit
    assert time.monotonic() - started < 1.0
    assert server.ended is None and box.values_waiting == 2 and box.keep_file.exists()

    again = make(server, tmp_path)  # e.g. `fit --resume`, once the server is back
    server.refuse = None
    assert [m.step for b in again.restore() for m in b.metrics] == [0, 1]
    again.send()
    assert [m.step for m in server.stored] == [0, 1] and not again.keep_file.exists()


def test_a_write_the_server_rejects_raises_and_is_not_retried(fast, tmp_path):
    server = FakeServer()
    server.refuse = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad value"})
    box = make(server, tmp_path)
    box.put(values(0, 1))
    with pytest.raises(RestException, match="bad value"):
        box.send()
    assert box.values_waiting == 0


@pytest.mark.parametrize(
    ("exc", "why"),
    [
        (connection_error(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
        (connection_error(TimeoutError("timed out")), "no answer"),
        (MlflowException("failed with error code 503 != 200", error_code=TEMPORARILY_UNAVAILABLE), "HTTP 503"),
        (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "x"}), "HTTP 503"),
        (RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"}), None),
        (ValueError("x"), None),
    ],
)
def test_unreachable_tells_an_absent_server_from_a_refusal(exc: BaseException, why: str | None) -> None:
    assert unreachable(exc) == why


def test_too_many_values_kept_is_overdue_too(fast, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_module, "MAX_VALUES", 3)
    server = FakeServer()
    server.refuse = connection_error(ConnectionRefusedError(111, "Connection refused"))
    box = make(server, tmp_path)
    box.put(values(0, 3))
    box.send()
    assert box.overdue() is None
    box.put(values(3, 4))
    assert box.overdue() == f"tracking server {SERVER} unreachable with 4 values waiting (at most 3)"


def test_the_limit_is_the_setting_else_the_environment_else_120_s(monkeypatch):
    monkeypatch.delenv("LIT_D2L_SERVER_TIMEOUT_S", raising=False)
    assert outbox_module.server_timeout_s() == 120
    monkeypatch.setenv("LIT_D2L_SERVER_TIMEOUT_S", "30")
    assert outbox_module.server_timeout_s() == 30
    assert outbox_module.server_timeout_s(5) == 5
    for bad in ("soon", "0", "-1", "inf"):
        monkeypatch.setenv("LIT_D2L_SERVER_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match=rf"^\$LIT_D2L_SERVER_TIMEOUT_S must be .* > 0, got '{bad}'$"):
            outbox_module.server_timeout_s()
    with pytest.raises(ConfigError, match=r"^tracking\.server_timeout_s must be a number of seconds > 0, got -3$"):
        outbox_module.server_timeout_s(-3)
