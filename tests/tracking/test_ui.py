"""`lit-d2l ui`: a busy port is one line; a killed `lit-d2l ui` takes MLflow's whole server with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.cli import ui
from lit_d2l.processes import interrupts
from tests.conftest import REPO
from tests.test_cli import assert_one_error_line, free_port, run_main


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path, capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_main(["ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"], capsys)
    assert_one_error_line(code, err, rf"port {port} is in use; pick another with --port")
    assert "MLflow dashboard" not in out
    assert not (tmp_path / "m.db").exists()


def test_the_dashboard_says_where_the_runs_are_once_it_answers(new_tracking_uri: str, monkeypatch, capsys) -> None:
    uri = new_tracking_uri  # its newest run is the one made here
    client = MlflowClient(uri)
    experiment = client.create_experiment("ui")
    parent = client.create_run(experiment, tags={"lit_d2l.kind": "sweep"}).info.run_id
    client.log_text(parent, "<html></html>", "report/report.html")
    started: list[tuple[list[str], dict]] = []
    answered: list[str] = []

    class Server:
        returncode = None

        def __init__(self, command: list[str], **kwargs) -> None:
            started.append((command, kwargs))

        def poll(self) -> None:
            return None

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(ui.subprocess, "Popen", Server)
    monkeypatch.setattr(ui, "answering", lambda server, address: answered.append(address) or True)
    port = free_port()
    code, out, _ = run_main(["ui", "--port", str(port), "--tracking-uri", uri], capsys)
    ((command, kwargs),) = started
    assert code == 0 and "mlflow" in command and uri in command
    assert command[command.index("--workers") + 1] == "1", "one worker: a lean server"
    assert kwargs["env"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false", "no job runner"
    lines = out.splitlines()
    address = f"http://127.0.0.1:{port}"
    assert answered == [address] and lines[1] == f"MLflow dashboard at {address} (Ctrl-C to stop)"
    assert f"{address}/#/experiments/{experiment}/runs" in lines[2]
    assert lines[3].endswith(f"/#/experiments/{experiment}/runs/{parent}/artifactPath/report/report.html")
    assert lines[4] == ui.MODEL_TRAINING_HINT and "Model training" in ui.MODEL_TRAINING_HINT


def test_a_stop_inside_a_finalizer_still_stops_the_dashboard(tracking_uri: str, monkeypatch, capsys) -> None:
    """A signal handler that raised would lose a stop landing in ``__del__`` ("Exception ignored"): the stop is
    noted instead, and the dashboard stops at its next poll (seen once as a `lit-d2l ui` that outlived SIGTERM)."""
    stopped: list[object] = []
    waits: list[float | None] = []

    class Finalized:
        def __del__(self) -> None:
            interrupts.handle(signal.SIGTERM, None)

    class Server:
        returncode = None

        def __init__(self, command: list[str], **kwargs) -> None:
            pass

        def poll(self) -> None:
            return None

        def wait(self, timeout: float | None = None) -> int:
            waits.append(timeout)
            if len(waits) == 1:
                Finalized()  # SIGTERM arrives while a finalizer runs
            if len(waits) > 20:
                return 0  # still serving: the stop was lost
            raise subprocess.TimeoutExpired("mlflow", timeout or 0)

    monkeypatch.setattr(ui.subprocess, "Popen", Server)
    monkeypatch.setattr(ui, "answering", lambda server, address: True)
    monkeypatch.setattr(ui, "stop_process_group", lambda server, grace_s: stopped.append(server))
    code, _, err = run_main(["ui", "--port", str(free_port()), "--tracking-uri", tracking_uri], capsys)
    assert code == 0 and len(stopped) == 1 and len(waits) <= 2, (waits, err)
    assert "Exception ignored" not in err


def test_a_server_that_exits_before_answering_is_one_line(tracking_uri: str, monkeypatch, capsys) -> None:
    class Server:
        returncode = 1

        def __init__(self, command: list[str], **kwargs) -> None:
            pass

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(ui.subprocess, "Popen", Server)
    code, out, err = run_main(["ui", "--port", str(free_port()), "--tracking-uri", tracking_uri], capsys)
    assert_one_error_line(code, err, r"the MLflow server exited \(1\) before answering at http://127\.0\.0\.1:")
    assert "MLflow dashboard at" not in out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server's death with its parent is Linux's prctl")
def test_a_killed_lit_d2l_ui_frees_its_port(tracking_uri: str, tmp_path: Path) -> None:
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", "ui", "--port", str(port), "--tracking-uri", tracking_uri],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            assert ui.poll() is None and time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.5)
    server_groups = {os.getpgid(pid) for pid in _descendants(ui.pid)}
    ui.send_signal(signal.SIGKILL)
    ui.wait()
    # Usually under a second; a server killed while still starting its job consumers may need the
    # guard's SIGKILL, 10 s after its SIGTERM.
    deadline = time.monotonic() + 30
    while not port_is_free(port):
        assert time.monotonic() < deadline, f"port {port} still held 30 s after lit-d2l ui was killed"
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while any(_group_alive(group) for group in server_groups):
        assert time.monotonic() < deadline, "server processes (workers, job consumers) outlived lit-d2l ui"
        time.sleep(0.2)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending += children.get(child, [])
    return found


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
