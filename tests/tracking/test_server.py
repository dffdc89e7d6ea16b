"""Runs recorded on a real MLflow tracking server, as a team shares one."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.runner import run_configured
from tests.conftest import LINEAR_CONFIG, only_run
from tests.test_cli import QUIET, free_port


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "art")]
    command += ["--workers", "1"]
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
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
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_fit_against_a_tracking_server(server_uri: str, experiment: str) -> None:
    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", server_uri, "--tracking.experiment", experiment, *QUIET]
    result = run_configured("fit", args)
    client = MlflowClient(server_uri)
    run = only_run(client, experiment)
    assert run.info.run_id == result.run_id
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 96
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text().startswith("# lightning")
