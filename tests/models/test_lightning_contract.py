"""lit-d2l's models behave as the Lightning docs say: subclasses, hooks, callbacks and CLI options work."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from mlflow.tracking import MlflowClient

from lit_d2l.data import GaussianClusters, SyntheticRegressionData
from lit_d2l.errors import ConfigError
from lit_d2l.fit.run import run_configured
from lit_d2l.models import MLP, LinearRegression, MLPScratch, SoftmaxRegression, built
from tests.conftest import linear_fit_args, only_run


def trainer(quiet_trainer: dict, **settings) -> L.Trainer:
    return L.Trainer(**{"max_epochs": 1, "logger": False, "num_sanity_val_steps": 0, **quiet_trainer, **settings})


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class TutorialStyle(SoftmaxRegression):
    """A subclass written as every Lightning tutorial writes one: compute the loss, return it."""

    def training_step(self, batch, batch_idx):
        X, y = batch
        return torch.nn.functional.cross_entropy(self(X), y)


def test_a_subclass_with_an_ordinary_training_step_trains(quiet_trainer: dict) -> None:
    L.seed_everything(0, verbose=False)
    model, recorder = TutorialStyle(lr=0.5), LossRecorder()
    fit = trainer(quiet_trainer, max_epochs=3, callbacks=[recorder])
    fit.fit(model, GaussianClusters(num_train=640))
    assert fit.global_step == 3 * 640 // 64
    assert model.automatic_optimization
    assert len(recorder.losses) == fit.global_step
    assert sum(recorder.losses[-5:]) / 5 < 0.5 * sum(recorder.losses[:5]) / 5


class WarmUp(MLP):
    """Lightning's documented learning-rate warm-up: an ``optimizer_step`` override."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.warm_up_calls = 0

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        self.warm_up_calls += 1
        for group in optimizer.param_groups:
            group["lr"] = self.lr * min(1.0, (self.trainer.global_step + 1) / 5)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


def test_an_optimizer_step_override_runs_every_step(quiet_trainer: dict) -> None:
    model = WarmUp(hidden_sizes=[16])
    fit = trainer(quiet_trainer)
    fit.fit(model, GaussianClusters(num_train=640))
    assert model.warm_up_calls == fit.global_step == 10


class HookCounter(L.Callback):
    def __init__(self) -> None:
        self.calls = {"on_after_backward": 0, "on_before_optimizer_step": 0, "on_before_zero_grad": 0}

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["on_before_optimizer_step"] += 1

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        self.calls["on_before_zero_grad"] += 1


@pytest.mark.parametrize("model", [lambda: MLP(hidden_sizes=[16]), lambda: SoftmaxRegression()], ids=["mlp", "softmax"])
def test_optimisation_callbacks_fire_every_step(model, quiet_trainer: dict) -> None:
    counter = HookCounter()
    fit = trainer(quiet_trainer, callbacks=[counter])
    fit.fit(model(), GaussianClusters(num_train=640))
    assert counter.calls == dict.fromkeys(counter.calls, 10)


def test_logged_metrics_reach_callback_metrics(quiet_trainer: dict) -> None:
    fit = trainer(quiet_trainer)
    fit.fit(MLP(hidden_sizes=[16]), GaussianClusters(num_train=640))
    assert {"train/loss", "train/loss_epoch", "val/loss", "val/acc"} <= set(fit.callback_metrics)


def test_early_stopping_on_val_loss_stops_the_fit(quiet_trainer: dict) -> None:
    # lr so small that val/loss cannot improve by min_delta: patience 2 stops at epoch 3 of 50.
    stop = EarlyStopping(monitor="val/loss", min_delta=0.1, patience=2)
    fit = trainer(quiet_trainer, max_epochs=50, callbacks=[stop])
    fit.fit(MLP(hidden_sizes=[16], lr=1e-4), GaussianClusters(num_train=256))
    assert fit.current_epoch == 3
    assert stop.stopped_epoch == 2


def test_model_checkpoint_on_train_loss_keeps_the_best(tmp_path, quiet_trainer: dict) -> None:
    settings = {**quiet_trainer, "enable_checkpointing": True}
    best = ModelCheckpoint(dirpath=tmp_path, monitor="train/loss", mode="min", save_top_k=1)
    fit = trainer(settings, max_epochs=4, callbacks=[best])
    fit.fit(LinearRegression(lr=0.03), SyntheticRegressionData(num_train=320))
    assert best.best_model_path and best.best_model_score is not None
    reloaded = LinearRegression.load_from_checkpoint(best.best_model_path)
    assert float(best.best_model_score) < 1.0
    assert reloaded.net.weight.shape == (1, 2)


def test_a_subclass_may_call_super_init_first(quiet_trainer: dict) -> None:
    class Wider(MLP):
        def __init__(self, factor: int = 2, **kwargs) -> None:
            super().__init__(**kwargs)  # before its own attribute, which build() reads
            self.factor = factor

        def build(self) -> None:
            self.hidden_sizes = [size * self.factor for size in self.hidden_sizes]
            super().build()

    model = Wider(factor=3, hidden_sizes=[8], num_inputs=20, num_outputs=10)
    trainer(quiet_trainer).fit(model, GaussianClusters(num_train=128))
    assert model.linear_layers()[0].out_features == 24
    assert model.hparams["factor"] == 3


def test_hand_written_backprop_uses_manual_optimisation(quiet_trainer: dict) -> None:
    model = MLPScratch(num_hiddens=16, lr=0.1)
    recorder = LossRecorder()
    fit = trainer(quiet_trainer, callbacks=[recorder])
    fit.fit(model, GaussianClusters(num_train=640))
    assert not model.automatic_optimization
    assert fit.global_step == len(recorder.losses) == 10


def test_gradient_clipping_clips(quiet_trainer: dict) -> None:
    torch.manual_seed(0)
    model = built(MLP(hidden_sizes=[16], num_inputs=20, num_outputs=10, lr=0.1))
    before = flat_parameters(model)
    trainer(quiet_trainer, max_steps=1, gradient_clip_val=1e-3).fit(model, GaussianClusters())
    assert torch.linalg.vector_norm(flat_parameters(model) - before) <= 0.1 * 1e-3 * (1 + 1e-4)


@pytest.mark.slow
def test_cli_optimizer_adam_trains(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    extra = ["--optimizer", "Adam", "--optimizer.lr", "0.1", "--trainer.max_epochs", "5"]
    result = run_configured("fit", linear_fit_args(tracking_uri, experiment, "--test_after_fit", "false", *extra))
    run = only_run(client, experiment)
    assert run.data.params["optimizer.class_path"] == "torch.optim.Adam"
    assert result.metrics["val/loss"] < 0.01
    assert float(result.learned["param_err/w"]) < 0.05


@pytest.mark.slow
def test_cli_lr_scheduler_changes_the_logged_learning_rate(
    tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    extra = ["--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5"]
    run_configured("fit", linear_fit_args(tracking_uri, experiment, "--test_after_fit", "false", *extra))
    run = only_run(client, experiment)
    [key] = [key for key in run.data.metrics if key.startswith("lr-")]  # LearningRateMonitor's name
    history = client.get_metric_history(run.info.run_id, key)
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([0.03, 0.015, 0.0075])


def test_a_non_finite_step_loss_is_not_dropped_from_the_epoch_mean(quiet_trainer: dict) -> None:
    class OneBadStep(LinearRegression):
        def training_step(self, batch, batch_idx):
            loss = self.objectives(batch)[0]
            self.log_train_loss(torch.tensor(float("nan")) if batch_idx == 3 else loss)
            return loss

    fit = trainer(quiet_trainer, max_epochs=1)
    fit.fit(OneBadStep(), SyntheticRegressionData(num_train=320))
    assert torch.isnan(fit.callback_metrics["train/loss_epoch"])
    assert torch.isfinite(fit.callback_metrics["val/loss"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--optimizer", "Adam", "--optimizer.lr", "-1"], "optimizer: Invalid learning rate"),
        (
            ["--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "0"],
            "lr_scheduler: --lr_scheduler.step_size 0 divides by zero .* give a value > 0",
        ),
        (["--lr_scheduler", "CosineAnnealingLR", "--lr_scheduler.T_max", "0"], r"T_max 0 divides by zero \("),
        (["--optimizer", "NotAnOptimizer"], "such as SGD, Adam or AdamW"),
        (["--lr_scheduler", "StepLR"], "required: step_size"),
    ],
)
def test_bad_optimizer_settings_fail_in_one_line_before_any_run(
    extra: list[str], message: str, tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        run_configured("fit", linear_fit_args(tracking_uri, experiment, *extra))
    assert "\n" not in str(error.value) and "Namespace(" not in str(error.value)
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"
