"""A tracking server that hangs mid-fit (SIGSTOP, the nastier case: connections open, nothing answers).

The fit says so in one line and trains on; once the server is back every value is stored once. A stop
signal during the outage is honoured within seconds, and an outage past ``tracking.server_timeout_s``
stops the fit as SIGTERM does; either way ``fit --resume`` completes the run's history.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.tracking.logger import UNSTORED_FILE
from tests.conftest import LINEAR_CONFIG, REPO
from tests.test_resilience import ENV, training, wait_for
from tests.tracking.test_server import mlflow_server_process

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 32  # 1000 examples, batch 32
OUTAGE_LINE = re.compile(r"^lit-d2l: tracking server http://\S+ unreachable since \d\d:\d\d:\d\d \(no answer in 5 s\)")


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_fit_left() -> Iterator[None]:
    """A test that fails midway leaves no fit training on."""
    yield
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()
    STARTED.clear()


class Fit:
    """A ``lit-d2l`` process whose output lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        command = [sys.executable, "-m", "lit_d2l", *args]
        env = {**ENV, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [ENV.get("PYTHONPATH")])])}
        # Run elsewhere: a server's runs keep their checkpoints in ./mlruns, not in the checkout.
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        STARTED.append(self.process)
        self.err: list[str] = []
        self.out: list[str] = []
        for stream, lines in ((self.process.stderr, self.err), (self.process.stdout, self.out)):
            threading.Thread(target=lambda s=stream, into=lines: into.extend(iter(s.readline, "")), daemon=True).start()

    def said(self, pattern: re.Pattern[str]) -> str | None:
        return next((line for line in self.err if pattern.search(line)), None)

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout=timeout_s)
        time.sleep(0.5)  # the reader threads take the last lines
        return code

    def lit_d2l_lines(self) -> list[str]:
        return [line.rstrip() for line in self.err if line.startswith("lit-d2l:")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str]]:
    with mlflow_server_process(tmp_path_factory.mktemp("server")) as started:
        yield started


@contextmanager
def hanging(process: subprocess.Popen) -> Iterator[None]:
    """The server stopped (SIGSTOP: its port accepts connections, nothing answers) until the block ends."""
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


def fit_args(uri: str, experiment: str, *extra: str) -> list[str]:
    args = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", uri, "--tracking.experiment", experiment]
    return [*args, "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def epochs_saved(checkpoints: Path) -> int:
    """The newest epoch checkpoint's epoch number (ModelCheckpoint keeps ``epoch=N-step=M.ckpt``), or -1."""
    found = [int(m.group(1)) for p in checkpoints.glob("epoch=*.ckpt") if (m := re.match(r"epoch=(\d+)", p.name))]
    return max(found, default=-1)


def assert_whole_history(client: MlflowClient, run_id: str, epochs: int | None = None) -> None:
    """Every logged step once: train/loss every 2nd step (log_every_n_steps 2), one train/loss_epoch per epoch."""
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert len(steps) == len(set(steps)), "duplicated steps"
    holes = [(a, b) for a, b in itertools.pairwise(steps) if b - a > 2]  # (a stop logs its last step too)
    assert steps[0] == 1 and not holes, f"holes in train/loss: {holes[:5]}"
    per_epoch = [m.step for m in client.get_metric_history(run_id, "train/loss_epoch")]
    assert len(per_epoch) == len(set(per_epoch)), "duplicated epochs"
    if epochs is not None:
        assert len(per_epoch) == epochs
        assert steps[-1] == epochs * STEPS_PER_EPOCH - 1


def test_an_outage_mid_fit_is_one_line_training_goes_on_and_every_value_is_stored_once(server, tmp_path, experiment):
    process, uri = server
    client = MlflowClient(uri)
    fit = Fit(
        *fit_args(uri, experiment, "--trainer.max_epochs", "100000", "--trainer.max_time", "00:00:01:00"), cwd=tmp_path
    )
    (run,) = wait_for(lambda: training(client, experiment), "training steps stored", process=fit.process)
    checkpoints = tmp_path / "mlruns" / "checkpoints" / run.info.experiment_id / run.info.run_id / "checkpoints"
    with hanging(process):
        stopped = time.monotonic()
        wait_for(lambda: fit.said(OUTAGE_LINE), "the outage line", timeout_s=60, process=fit.process)
        assert time.monotonic() - stopped < 45  # a flush at every epoch's end or 10 s, then 5 s of waiting
        at_line = epochs_saved(checkpoints)
        wait_for(
            lambda: epochs_saved(checkpoints) >= at_line + 2, "epochs trained during the outage", process=fit.process
        )
    back = re.compile(rf"^lit-d2l: tracking server {uri} is back after \d+ s$")
    wait_for(lambda: fit.said(back), "the line saying the server is back", timeout_s=60, process=fit.process)
    assert fit.wait(timeout_s=300) == 0, fit.err[-20:]
    lines = fit.lit_d2l_lines()
    assert len(lines) == 2 and OUTAGE_LINE.match(lines[0]) and back.match(lines[1]), lines
    assert not any("Traceback" in line for line in fit.err)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert_whole_history(client, run.info.run_id)
    assert not list(checkpoints.parent.glob(UNSTORED_FILE))


def resume_and_check(client: MlflowClient, uri: str, run_id: str, step: int, cwd: Path) -> None:
    """``fit --resume`` (one epoch more than the stop's) completes the run: FINISHED, every step once."""
    epochs = step // STEPS_PER_EPOCH + 1
    resumed = Fit("fit", "--resume", run_id, "--tracking.uri", uri, "--trainer.max_epochs", str(epochs), cwd=cwd)
    assert resumed.wait(timeout_s=300) == 0, resumed.err[-20:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert_whole_history(client, run_id, epochs)
    assert not list(cwd.glob(f"mlruns/checkpoints/*/{run_id}/{UNSTORED_FILE}"))


def test_sigterm_during_an_outage_stops_within_seconds_and_resume_stores_what_was_kept(server, tmp_path, experiment):
    process, uri = server
    client = MlflowClient(uri)
    fit = Fit(*fit_args(uri, experiment, "--trainer.max_epochs", "100000"), cwd=tmp_path)
    (run,) = wait_for(lambda: training(client, experiment), "training steps stored", process=fit.process)
    run_id = run.info.run_id
    with hanging(process):
        wait_for(lambda: fit.said(OUTAGE_LINE), "the outage line", timeout_s=60, process=fit.process)
        time.sleep(2)  # values logged during the outage
        fit.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert fit.wait(timeout_s=60) == 128 + signal.SIGTERM
        assert time.monotonic() - signalled <= 10
        lines = fit.lit_d2l_lines()
        assert len(lines) == 2 and OUTAGE_LINE.match(lines[0]), lines
        stop = re.match(
            r"lit-d2l: interrupted by SIGTERM at step (\d+); checkpoint \S+interrupted-step=\1\.ckpt; ", lines[1]
        )
        assert stop, lines[1]
        assert f"MLflow run {run_id} stays RUNNING until a lit-d2l command finds its process gone" in lines[1]
        assert lines[1].endswith(f"continue it with: lit-d2l fit --resume {run_id} --tracking.uri {uri}")
        assert not any("Traceback" in line for line in fit.err)
        assert list(tmp_path.glob(f"mlruns/checkpoints/*/{run_id}/{UNSTORED_FILE}"))
    resume_and_check(client, uri, run_id, int(stop.group(1)), tmp_path)


def test_an_outage_past_the_limit_stops_the_fit_in_one_line_and_resume_completes_it(server, tmp_path, experiment):
    process, uri = server
    client = MlflowClient(uri)
    fit = Fit(
        *fit_args(uri, experiment, "--trainer.max_epochs", "100000", "--tracking.server_timeout_s", "4"), cwd=tmp_path
    )
    (run,) = wait_for(lambda: training(client, experiment), "training steps stored", process=fit.process)
    run_id = run.info.run_id
    with hanging(process):
        assert fit.wait(timeout_s=120) == 128 + signal.SIGTERM
        lines = fit.lit_d2l_lines()
        assert len(lines) == 2 and OUTAGE_LINE.match(lines[0]), lines
        stop = re.match(
            rf"lit-d2l: stopped: tracking server {uri} unreachable for \d+ s \(limit 4 s\), at step (\d+); checkpoint ",
            lines[1],
        )
        assert stop, lines[1]
        assert lines[1].endswith(f"continue it with: lit-d2l fit --resume {run_id} --tracking.uri {uri}")
        assert not any("Traceback" in line for line in fit.err)
    resume_and_check(client, uri, run_id, int(stop.group(1)), tmp_path)


class PauseServerAtLastEpoch(L.Callback):
    """Hangs the server (SIGSTOP to its process group) as the last epoch ends, once: a resume does not again."""

    def __init__(self, pgid: int, marker: str) -> None:
        self.pgid, self.marker = pgid, Path(marker)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 == trainer.max_epochs and not self.marker.exists():
            self.marker.touch()
            os.killpg(self.pgid, signal.SIGSTOP)


def test_a_fit_ending_during_an_outage_waits_up_to_the_limit_then_keeps_its_values(server, tmp_path, experiment):
    process, uri = server
    client = MlflowClient(uri)
    pause = tmp_path / "pause.yaml"
    pause.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.tracking.test_outage.PauseServerAtLastEpoch\n"
        f"      init_args: {{pgid: {process.pid}, marker: {tmp_path / 'paused'}}}\n"
    )
    # Past the last checkpoint (5 s of waiting there) the fit cannot stop: the limit passes after it.
    limit = ["--tracking.server_timeout_s", "12", "--trainer.max_epochs", "2"]
    fit = Fit(*fit_args(uri, experiment, "--config", str(pause), *limit), cwd=tmp_path)
    try:
        assert fit.wait(timeout_s=300) == 2, fit.err[-20:]
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = run.info.run_id
    lines = fit.lit_d2l_lines()
    assert len(lines) == 2 and OUTAGE_LINE.match(lines[0]), lines
    kept = next(tmp_path.glob(f"mlruns/checkpoints/*/{run_id}/{UNSTORED_FILE}"))
    assert re.fullmatch(
        rf"lit-d2l: error: tracking server {uri} unreachable for \d+ s \(limit 12 s\): \d+ values not stored are kept "
        rf"in {re.escape(str(kept.relative_to(tmp_path)))}; once the server is back, lit-d2l fit --resume {run_id} "
        "stores them",
        lines[1],
    ), lines[1]
    assert not any("Traceback" in line for line in fit.err)

    resumed = Fit("fit", "--resume", run_id, "--tracking.uri", uri, cwd=tmp_path)
    assert resumed.wait(timeout_s=300) == 0, resumed.err[-20:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert_whole_history(client, run_id, epochs=2)
    assert len(client.get_metric_history(run_id, "test/loss")) == 1
    assert not kept.exists()
