"""Runs recorded on a real MLflow tracking server, as a team shares one."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.fit.run import run_configured
from lit_d2l.processes.guard import stop_process_group
from tests.conftest import LINEAR_CONFIG, only_run
from tests.test_cli import QUIET, free_port


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store and served artifacts under ``root``); yields its URI."""
    with mlflow_server_process(root) as (_, uri):
        yield uri


@contextmanager
def mlflow_server_process(root: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """:func:`mlflow_server`, with its process (the leader of its own process group)."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts"]
    command += ["--artifacts-destination", str(root / "art"), "--workers", "1"]
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield server, uri
    finally:
        stop_process_group(server)


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        yield uri


@pytest.mark.slow
def test_fit_against_a_tracking_server(server_uri: str, experiment: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # checkpoints of a server's runs stay on this machine: not in the checkout
    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", server_uri, "--tracking.experiment", experiment, *QUIET]
    result = run_configured("fit", args)
    client = MlflowClient(server_uri)
    run = only_run(client, experiment)
    assert run.info.run_id == result.run_id
    assert run.info.status == "FINISHED"
    # Artifacts go up through the server; checkpoints to mlruns/checkpoints here, not to ./<experiment id>/.
    assert client.get_experiment(run.info.experiment_id).artifact_location.startswith("mlflow-artifacts:/")
    checkpoints = Path(run.data.tags["lit_d2l.checkpoint_dir"])
    assert checkpoints.is_relative_to(tmp_path / "mlruns" / "checkpoints") and list(checkpoints.glob("*.ckpt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns"]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 96 // 2  # log_every_n_steps: 2
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text().startswith("# lightning")


@pytest.mark.slow
def test_a_fits_model_and_dataset_go_through_the_server(server_uri: str, experiment: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", server_uri, "--tracking.experiment", experiment, *QUIET]
    result = run_configured("fit", [*args, "--trainer.max_epochs", "1", "--tracking.register_model", experiment])
    assert result is not None and result.model_uri == f"runs:/{result.run_id}/model"
    client = MlflowClient(server_uri)
    (dataset,) = client.get_run(result.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "SyntheticRegressionData"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_uri)  # runs:/ and models:/ resolve through the server
    for uri in (result.model_uri, f"models:/{experiment}/1"):
        assert type(mlflow.pytorch.load_model(uri)).__name__ == "LinearRegressionScratch", uri


@pytest.mark.slow
def test_lit_d2l_ui_serves_the_projects_store(tmp_path: Path, experiment: str) -> None:
    """`lit-d2l ui` in a project directory shows that directory's runs."""
    import os

    # The project's default store, named by its absolute path here: MLflow caches stores by URI within a
    # process, so a relative URI would reach whichever directory an earlier test used it in.
    args = ["--config", str(LINEAR_CONFIG), "--tracking.experiment", experiment, *QUIET, "--trainer.max_epochs", "1"]
    result = run_configured("fit", [*args, "--tracking.uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    uri = f"http://127.0.0.1:{port}"
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in ui.stdout or ()], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(f"MLflow dashboard at {uri}" in line for line in seen):  # it says so once it answers
            assert ui.poll() is None and time.monotonic() < deadline, f"the dashboard did not come up: {seen}"
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        with urllib.request.urlopen(f"{uri}/", timeout=10) as page:
            assert page.status == 200
        runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name(experiment).experiment_id])
        assert [run.info.run_id for run in runs] == [result.run_id]
    finally:
        ui.terminate()  # lit-d2l turns SIGTERM into a clean stop of the whole dashboard
        ui.wait(timeout=60)
        reader.join(timeout=10)
    assert ui.returncode == 0
