"""The explicit SGD step (D2L's loop) and Lightning's automatic optimisation make the same updates."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_d2l.data import GaussianClusters, SyntheticRegressionData
from lit_d2l.models import MLP, LinearRegressionScratch, MLPScratch, SoftmaxRegressionScratch


class StepRecorder(L.Callback):
    """Records each step's loss and whether Lightning's automatic optimisation ran the fit."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.automatic: set[bool] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))
        self.automatic.add(pl_module.automatic_optimization)


def fit(model: L.LightningModule, data: L.LightningDataModule, quiet_trainer: dict, **trainer_args):
    recorder = StepRecorder()
    L.seed_everything(0, verbose=False)
    settings = {"max_epochs": 2, "logger": False, "num_sanity_val_steps": 0, **quiet_trainer, **trainer_args}
    trainer = L.Trainer(callbacks=[recorder], **settings)
    trainer.fit(model, data)
    return trainer, recorder


MODELS = {
    "mlp-momentum-decay-l2": lambda: MLP(hidden_sizes=[16], lr=0.1, momentum=0.9, weight_decay=1e-3, l2=1e-3),
    "softmax-scratch": lambda: SoftmaxRegressionScratch(lr=0.1),
    "linear-scratch": lambda: LinearRegressionScratch(lr=0.03),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_explicit_step_equals_automatic_optimization(name: str, quiet_trainer: dict) -> None:
    data = (lambda: SyntheticRegressionData(num_train=320)) if name.startswith("linear") else GaussianClusters
    runs = {}
    for explicit in (True, False):
        torch.manual_seed(0)
        model = MODELS[name]()
        model.explicit_step = explicit
        trainer, recorder = fit(model, data(), quiet_trainer)
        assert recorder.automatic == {not explicit}
        runs[explicit] = (trainer.global_step, recorder.losses, [p.detach().clone() for p in model.parameters()])
    (steps, losses, params), (auto_steps, auto_losses, auto_params) = runs[True], runs[False]
    assert steps == auto_steps == len(losses) > 0
    assert losses == pytest.approx(auto_losses, rel=1e-5, abs=1e-7)
    for explicit_param, automatic_param in zip(params, auto_params, strict=True):
        torch.testing.assert_close(explicit_param, automatic_param, rtol=1e-5, atol=1e-6)


def test_gradient_clipping_goes_through_lightning_and_clips(quiet_trainer: dict) -> None:
    torch.manual_seed(0)
    model = MLP(hidden_sizes=[16], num_inputs=20, num_outputs=10, lr=0.1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    _, recorder = fit(model, GaussianClusters(), quiet_trainer, max_steps=1, gradient_clip_val=1e-3)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert recorder.automatic == {True}
    assert torch.linalg.vector_norm(after - before) <= 0.1 * 1e-3 * (1 + 1e-4)  # lr · clipped gradient norm


def test_accumulation_goes_through_lightning(quiet_trainer: dict) -> None:
    trainer, recorder = fit(
        MLP(hidden_sizes=[16]), GaussianClusters(num_train=640), quiet_trainer, accumulate_grad_batches=2, max_epochs=1
    )
    assert recorder.automatic == {True}
    assert trainer.global_step == 640 // 64 // 2


def test_hand_written_backprop_stays_manual(quiet_trainer: dict) -> None:
    model = MLPScratch(num_hiddens=16, lr=0.1)
    trainer, recorder = fit(model, GaussianClusters(num_train=640), quiet_trainer, max_epochs=1)
    assert recorder.automatic == {False}
    assert trainer.global_step == 640 // 64


@pytest.mark.parametrize("first, then", [({}, {"gradient_clip_val": 1e9}), ({"gradient_clip_val": 1e9}, {})])
def test_resuming_in_the_other_mode_keeps_counting_steps(first: dict, then: dict, tmp_path, quiet_trainer) -> None:
    model = MLP(hidden_sizes=[16])
    trainer, _ = fit(model, GaussianClusters(num_train=640), quiet_trainer, max_epochs=1, **first)
    trainer.save_checkpoint(tmp_path / "one_epoch.ckpt")
    settings = {"max_epochs": 2, "logger": False, "num_sanity_val_steps": 0, **quiet_trainer, **then}
    resumed = L.Trainer(**settings)
    resumed.fit(MLP(hidden_sizes=[16]), GaussianClusters(num_train=640), ckpt_path=tmp_path / "one_epoch.ckpt")
    assert trainer.global_step == 640 // 64
    assert resumed.global_step == 2 * 640 // 64
