"""Interrupt a fit with a real signal, resume it with --resume: the same MLflow run, every step once."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_d2l.cli.main import main
from lit_d2l.errors import UserError
from lit_d2l.fit.resume import check_same_settings, resume_args
from lit_d2l.fit.run import build, execute, run_configured
from lit_d2l.processes.interrupts import Interrupted, stop_signals_handled
from lit_d2l.tracking.liveness import PARENT_TAG, TAKEOVER_PREFIX
from lit_d2l.tracking.run_record import CONFIG_ARTIFACT
from lit_d2l.tracking.runs import config_of
from tests.conftest import linear_fit_args
from tests.tracking.test_takeover import stopped_run

EPOCHS = ["--trainer.max_epochs", "4", "--trainer.log_every_n_steps", "1", "--seed_everything", "3"]


class SignalAtStep(L.Callback):
    """Sends this process a real signal once training reaches ``step``."""

    def __init__(self, step: int, signum: int = signal.SIGTERM) -> None:
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class SignalDuringEpochEnd(L.Callback):
    """Sends this process a SIGTERM once, in epoch 1, at ``moment``: the epoch's last step, a batch of
    a validation (mid-epoch or at the epoch's end) or the epoch's end. A stop inside validation would be resumed
    without the rest of that epoch's end; lit-d2l holds the signal until Lightning's stop is clean."""

    def __init__(self, moment: str) -> None:
        self.moment, self.sent = moment, False

    def _send(self, trainer: L.Trainer, moment: str) -> None:
        if moment == self.moment and trainer.current_epoch == 1 and not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self._send(trainer, "last step")

    def on_validation_batch_end(self, trainer: L.Trainer, *args) -> None:
        self._send(trainer, "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        self._send(trainer, "epoch end")


def _params(cli) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_a_signalled_fit_resumes_in_the_same_run_with_every_step_once(tracking_uri, client, experiment, signum):
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS)
    whole = build("fit", args)
    execute(whole, "fit")

    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalAtStep(45, signum)])
    run_id = stopped.value.run_id
    assert stopped.value.step == 45 and stopped.value.signum == signum
    assert client.get_run(run_id).info.status == "KILLED"
    assert "--resume" in str(stopped.value)

    resumed_args, recorded = resume_args(run_id, ["--tracking.uri", tracking_uri, *EPOCHS[2:]])
    resumed = build("fit", resumed_args)
    check_same_settings(resumed.config.as_dict(), recorded)
    result = execute(resumed, "fit")

    assert result.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    for name, value in _params(whole).items():
        torch.testing.assert_close(_params(resumed)[name], value, atol=1e-6, rtol=0)
    for key in ("train/loss", "train/loss_epoch", "val/loss"):
        history, reference = _history(client, run_id, key), _history(client, whole.logger.version, key)
        assert [step for step, _ in history] == [step for step, _ in reference], key  # every step once
        assert [v for _, v in history] == pytest.approx([v for _, v in reference], abs=1e-6), key


class SignalAtTest(L.Callback):
    """Sends this process a SIGTERM as the end-of-fit test starts: training is over."""

    def on_test_start(self, trainer: L.Trainer, pl_module) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_after_training_says_how_to_finish_the_run(tracking_uri, client, experiment) -> None:
    """It said only that the run is KILLED (found by a hostile tryout), though fit --resume tests it and ends it."""
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS, "--test_after_fit", "true")
    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalAtTest()])
    run_id = stopped.value.run_id
    assert stopped.value.checkpoint and f"continue it with: lit-d2l fit --resume {run_id}" in str(stopped.value)
    assert client.get_run(run_id).info.status == "KILLED" and "test/loss" not in client.get_run(run_id).data.metrics
    resumed_args, _ = resume_args(run_id, ["--tracking.uri", tracking_uri])
    run_configured("fit", resumed_args)
    assert client.get_run(run_id).info.status == "FINISHED" and "test/loss" in client.get_run(run_id).data.metrics


def test_a_stops_checkpoint_is_deleted_once_the_fit_that_went_on_from_it_is_past_it(tracking_uri, client, experiment):
    """validate/test --run and --resume take a run's newest checkpoint: never a stop's that its fit went past."""
    from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
    from lit_d2l.fit.resume import evaluate_args, latest_checkpoint

    args = linear_fit_args(tracking_uri, experiment, *EPOCHS, "--trainer.enable_checkpointing", "false")
    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalAtStep(10)])
    run_id = stopped.value.run_id
    with pytest.raises(UserError, match=rf"run {run_id} is KILLED, not trained to its end: finish it with lit-d2l fit"):
        evaluate_args(run_id, ["--tracking.uri", tracking_uri])  # evaluated in it, it would end FINISHED
    assert client.get_run(run_id).info.status == "KILLED"
    folder = client.get_run(run_id).data.tags[CHECKPOINT_DIR_TAG]
    for step in (20, None):  # stopped again at step 20, then to the end
        resumed_args, _ = resume_args(run_id, ["--tracking.uri", tracking_uri])
        with stop_signals_handled(), pytest.raises(Interrupted) if step else contextlib.nullcontext():
            run_configured("fit", resumed_args, callbacks=[SignalAtStep(step)] if step else [])
        left = sorted(p.name for p in Path(folder).glob("*.ckpt"))
        assert left == ([f"interrupted-step={step}.ckpt"] if step else []), left  # step 10's went with the resume
    assert client.get_run(run_id).info.status == "FINISHED" and latest_checkpoint(folder) is None
    with pytest.raises(UserError, match="saved no checkpoint"):  # not the weights of step 20, as if they were final
        evaluate_args(run_id, ["--tracking.uri", tracking_uri])


@pytest.mark.parametrize(
    ("moment", "validation"),
    [
        ("validation", []),
        pytest.param("validation", ["--trainer.val_check_interval", "0.5"], marks=pytest.mark.slow),  # mid-epoch
        pytest.param("last step", [], marks=pytest.mark.slow),
        pytest.param("epoch end", [], marks=pytest.mark.slow),
    ],
)
def test_a_signal_at_an_epochs_end_or_validation_resumes_with_every_value_once(
    tracking_uri, client, experiment, moment, validation
):
    trainer = ["--trainer.limit_val_batches", "4", *validation]
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS, *trainer)
    whole = build("fit", args)
    execute(whole, "fit")

    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalDuringEpochEnd(moment)])
    run_id = stopped.value.run_id
    resumed_args, _ = resume_args(run_id, ["--tracking.uri", tracking_uri, *EPOCHS[2:], *trainer])
    resumed = build("fit", resumed_args)
    execute(resumed, "fit")

    for name, value in _params(whole).items():
        torch.testing.assert_close(_params(resumed)[name], value, atol=1e-6, rtol=0)
    for key in ("train/loss", "train/loss_epoch", "val/loss"):
        history, reference = _history(client, run_id, key), _history(client, whole.logger.version, key)
        assert [step for step, _ in history] == [step for step, _ in reference], key
        assert [v for _, v in history] == pytest.approx([v for _, v in reference], abs=1e-6), key


@pytest.mark.slow
def test_resume_refuses_a_finished_run_and_changed_settings(tracking_uri, client, experiment, capsys):
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS)
    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalAtStep(5)])
    run_id = stopped.value.run_id
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--resume", run_id, "--tracking.uri", tracking_uri, "--model.lr", "0.5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit-d2l: error: a resumed run must keep its settings: model.lr was 0.03, now 0.5")
    assert len(err.splitlines()) == 1
    assert client.get_run(run_id).info.status == "KILLED"  # untouched by the refused resume

    with pytest.raises(SystemExit) as exit_:  # without --config: the run's own config.yaml
        main(["fit", "--resume", run_id, "--tracking.uri", tracking_uri, *QUIET])
    assert exit_.value.code == 0
    assert client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--resume", run_id, "--tracking.uri", tracking_uri])
    assert exit_.value.code == 2
    assert "already FINISHED" in capsys.readouterr().err


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.mark.slow
def test_a_resume_lightning_refuses_leaves_the_runs_config_as_it_was(tracking_uri, client, experiment, capsys):
    args = linear_fit_args(tracking_uri, experiment, *EPOCHS)
    with stop_signals_handled(), pytest.raises(Interrupted) as stopped:
        run_configured("fit", args, callbacks=[SignalAtStep(70)])  # in epoch 2 (32 steps an epoch)
    run_id = stopped.value.run_id
    recorded = config_of(tracking_uri, run_id, CONFIG_ARTIFACT).read_text()
    capsys.readouterr()  # MLflow's download bar
    resume = ["fit", "--resume", run_id, "--tracking.uri", tracking_uri, *QUIET]
    with pytest.raises(SystemExit) as exit_:  # fewer epochs than the checkpoint has done: Lightning refuses
        main([*resume, "--trainer.max_epochs", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit-d2l: error: You restored a checkpoint with current_epoch=2") and "\n" not in err
    assert client.get_run(run_id).info.status == "KILLED"
    assert config_of(tracking_uri, run_id, CONFIG_ARTIFACT).read_text() == recorded, "the refused settings stay out"

    with pytest.raises(SystemExit) as exit_:  # the run's own config.yaml again: its 4 epochs
        main(resume)
    assert exit_.value.code == 0
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(_history(client, run_id, "train/loss_epoch")) == 4, "one value per epoch of the 4"


def test_a_signal_during_a_write_to_the_store_takes_effect_after_it(tracking_uri, client, experiment):
    from lit_d2l.tracking import TrackingLogger

    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.flush()
    real = logger.experiment.log_batch

    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. a second SIGTERM while a stopping run writes its metrics
        return real(*args, **kwargs)

    logger.experiment.log_batch = interrupted_write
    logger.log_metrics({"train/loss": 2.0}, step=1)
    with stop_signals_handled(), pytest.raises(Interrupted):
        logger.finalize("failed")
    assert _history(client, logger.version, "train/loss") == [(0, 1.0), (1, 2.0)]
    assert client.get_run(logger.version).info.status == "FAILED"  # ended, as finalize("failed") asked


@pytest.mark.parametrize(
    ("tags", "says"),
    [
        ({"fold": "1", "arm": "data.fold=1"}, "is a fold of cross-validation run parent-0: run the same lit-d2l cv"),
        ({"arm": "model.l2=3", "seed": "0"}, "is an arm of sweep run parent-0: run lit-d2l ablate with its spec"),
        ({"lit_d2l.kind": "cross-validation"}, "is a cross-validation's parent run: run the same lit-d2l cv command"),
    ],
)
def test_a_stopped_fold_or_arm_is_not_resumed_alone_even_with_its_stops_checkpoint(
    tracking_uri, client, experiment, tmp_path, tags, says
):
    """Its sweep fits it again: resumed alone, it would be FINISHED twice under one parent."""
    run_id = stopped_run(client, experiment, tmp_path / "ckpt")  # a checkpoint and a config.yaml, KILLED
    for key, value in {**tags, PARENT_TAG: "parent-0"}.items():
        client.set_tag(run_id, key, value)
    with pytest.raises(UserError, match=f"run {run_id} {says}"):
        resume_args(run_id, ["--tracking.uri", tracking_uri])
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and not [k for k in run.data.tags if k.startswith(TAKEOVER_PREFIX)]
