"""Real processes: a SIGKILL right after a checkpoint leaves no hole, and two resumes at once train once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
from lit_d2l.fit.run import build, execute, run_configured
from lit_d2l.processes.interrupts import Interrupted, stop_signals_handled
from tests.conftest import REPO, linear_fit_args
from tests.test_resilience import lit_d2l, running_runs, wait_for
from tests.test_resume import EPOCHS, SignalAtStep

pytestmark = pytest.mark.slow

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in run.data.metrics}


def checkpoints_of(client: MlflowClient, experiment: str) -> list[Path]:
    runs = running_runs(client, experiment)
    folder = runs[0].data.tags.get(CHECKPOINT_DIR_TAG) if runs else None
    return sorted(Path(folder).glob("*.ckpt")) if folder else []


@pytest.mark.parametrize(
    ("config", "options"),
    [
        # Checkpoints at validation, every 20 epochs, before that epoch's train/loss_epoch is logged.
        ("polynomial.yaml", ["--trainer.max_epochs", "60"]),
        # Checkpoints at every epoch's end, before the epoch's values reach the logger.
        ("linear_regression.yaml", ["--trainer.max_epochs", "5", "--test_after_fit", "false"]),
    ],
)
def test_a_sigkill_right_after_a_checkpoint_leaves_no_hole_after_resume(
    tracking_uri, client, experiment, config, options
):
    args = [
        "--config",
        str(REPO / "experiments" / config),
        "--tracking.uri",
        tracking_uri,
        "--tracking.experiment",
        experiment,
        *options,
        *QUIET,
    ]
    whole = execute(build("fit", args), "fit")

    fit = lit_d2l("fit", *args)
    wait_for(lambda: checkpoints_of(client, experiment), "the first checkpoint file", process=fit)
    fit.send_signal(signal.SIGKILL)
    fit.communicate(timeout=30)
    (killed,) = [r for r in running_runs(client, experiment) if r.info.run_id != whole.run_id]

    resumed = lit_d2l("fit", "--resume", killed.info.run_id, "--tracking.uri", tracking_uri, *QUIET)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err

    history, reference = histories(client, killed.info.run_id), histories(client, whole.run_id)
    assert sorted(history) == sorted(reference)
    for key, values in reference.items():
        assert [step for step, _ in history[key]] == [step for step, _ in values], key  # no hole, no repeat
        assert [v for _, v in history[key]] == pytest.approx([v for _, v in values], abs=1e-6), key


def test_two_resumes_of_one_run_started_at_once_train_it_once(tracking_uri, client, experiment):
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS)
    more = ["--tracking.uri", tracking_uri, "--trainer.max_epochs", "30", *QUIET]
    for _ in range(2):
        with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
            run_configured("fit", args, callbacks=[SignalAtStep(5)])
        run_id = stopped.value.run_id

        resumes = [lit_d2l("fit", "--resume", run_id, *more) for _ in range(2)]  # started back to back
        ended = [(process, *process.communicate(timeout=600)) for process in resumes]
        assert sorted(p.returncode for p, _, _ in ended) == [0, 2], [(p.returncode, err[-2000:]) for p, _, err in ended]
        (winner,) = [process for process, _, _ in ended if process.returncode == 0]
        (refusal,) = [err.strip().splitlines() for process, _, err in ended if process.returncode == 2]
        assert len(refusal) == 1 and f"pid {winner.pid} on " in refusal[0], refusal
        assert refusal[0].startswith(f"lit-d2l: error: run {run_id} is "), refusal
        assert client.get_run(run_id).info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss_epoch")]
        assert len(steps) == len(set(steps)) == 30  # every epoch once: none trained twice


def test_a_sigkill_during_the_end_of_fit_test_leaves_the_run_to_resume_not_finished(tracking_uri, client, experiment):
    """Lightning ends a logger at the end of ``trainer.fit``: the run stayed FINISHED without its test metrics when
    the process died in the test that follows, and ``fit --resume`` refused it. It stays RUNNING until the test is
    done, so the next command closes it KILLED and the resume tests it, logging no second model."""
    import subprocess
    import sys

    kill_at_test = (
        "import os, signal, sys\nimport lightning as L\nfrom lit_d2l.cli.main import main\n"
        "L.Trainer.test = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)\nmain(['fit', *sys.argv[1:]])\n"
    )
    args = ["--config", str(REPO / "experiments" / "linear_regression.yaml"), "--trainer.max_epochs", "2", *QUIET]
    args += ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    killed = subprocess.run([sys.executable, "-c", kill_at_test, *args], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run,) = running_runs(client, experiment)
    run_id = run.info.run_id
    assert "val/loss" in run.data.metrics and "test/loss" not in run.data.metrics
    resumed = lit_d2l("fit", "--resume", run_id, "--tracking.uri", tracking_uri)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "final test/loss = " in out and "val/loss = " in out and "no val/ metric" not in out
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "test/loss" in run.data.metrics
    assert len(run.outputs.model_outputs) == 1, "the model the first fit logged, not a second"
