"""Every run ends with a true status: FINISHED, FAILED on an exception, KILLED on an interrupt."""

from __future__ import annotations

import signal

import lightning as L
import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.data import SyntheticRegressionData
from lit_d2l.models import LinearRegression
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import EndStatusOnException
from tests.conftest import only_run


class RaiseAtStep(L.Callback):
    def __init__(self, exception: BaseException, step: int = 5) -> None:
        self.exception, self.step = exception, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise self.exception


def fit_with(callback: L.Callback, tracking_uri: str, experiment: str, quiet_trainer: dict) -> None:
    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    # The logger's partner callback tells it what the exception means, as every lit-d2l command does.
    callbacks = [callback, EndStatusOnException()]
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=callbacks, log_every_n_steps=1, **quiet_trainer)
    trainer.fit(LinearRegression(lr=0.03), SyntheticRegressionData(num_train=320, num_val=64))


def test_an_exception_in_training_marks_the_run_failed(tracking_uri, client: MlflowClient, experiment, quiet_trainer):
    with pytest.raises(RuntimeError, match="boom"):
        fit_with(RaiseAtStep(RuntimeError("boom")), tracking_uri, experiment, quiet_trainer)
    run = only_run(client, experiment)
    assert run.info.status == "FAILED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 5, "metrics before the failure are kept"


def test_ctrl_c_marks_the_run_killed(tracking_uri, client: MlflowClient, experiment, quiet_trainer):
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits 1
            fit_with(RaiseAtStep(KeyboardInterrupt()), tracking_uri, experiment, quiet_trainer)
    finally:
        signal.signal(signal.SIGINT, previous)  # Lightning ignores SIGINT while shutting down
    assert only_run(client, experiment).info.status == "KILLED"


def test_a_successful_fit_is_finished_and_finalize_is_idempotent(tracking_uri, client, experiment, quiet_trainer):
    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    trainer = L.Trainer(max_epochs=1, logger=logger, **quiet_trainer)
    trainer.fit(LinearRegression(lr=0.03), SyntheticRegressionData(num_train=64, num_val=32))
    logger.finalize("success")
    assert only_run(client, experiment).info.status == "FINISHED"


def test_params_are_flattened_and_a_changed_value_is_not_overwritten(tracking_uri, client, experiment):
    logger = TrackingLogger(experiment_name=experiment, tracking_uri=tracking_uri)
    logger.log_hyperparams({"optimizer": {"lr": 0.1, "momentum": 0.9}, "epochs": 3})
    with pytest.warns(UserWarning, match="already logged"):
        logger.log_hyperparams({"epochs": 4})
    logger.finalize("success")
    params = only_run(client, experiment).data.params
    assert params == {"optimizer.lr": "0.1", "optimizer.momentum": "0.9", "epochs": "3"}
