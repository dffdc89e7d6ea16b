"""A pack runs the model's own code and the configured callbacks, not copies of them.

The models here are a researcher's own (this test module is their package): one with its own loss, one
with its own objective. Each packs and equals its solo fit step for step, because the pack calls the
model's ``objectives`` through ``torch.func``. A configured callback that handles a pack's arms
(``per_arm``, as :class:`~lit_d2l.callbacks.TrainAccuracy`) runs in the pack on each arm's values; one that
does not, or a model with a Lightning hook of its own, sends the arms alone with the reason.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from lit_d2l.fit.run import build
from lit_d2l.models import MLP
from lit_d2l.sweeps.packs.fit import build_arm, fit_pack
from lit_d2l.sweeps.packs.plan import plan_packs
from tests.sweeps.packs.memory_logger import MemoryLogger
from tests.sweeps.packs.test_equality import CLUSTERS, StepLosses, fit_args, seeded
from tests.sweeps.packs.test_plan import arms as plan_units

HERE = __name__


class SmoothedMLP(MLP):
    """Its own data loss: cross-entropy with label smoothing (D2L's loss, softened)."""

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, y, label_smoothing=0.1)


class LassoMLP(MLP):
    """Its own objective: an L1 term on the weights beside the model's L2 penalty."""

    def objectives(self, batch: tuple[Tensor, ...], l2: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
        objective, data_loss = super().objectives(batch, l2)
        return objective + 1e-3 * sum(w.abs().sum() for w in self.weights().values()), data_loss


class EpochHookMLP(MLP):
    """A Lightning hook of its own, which a pack would not run."""

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("weights/count", float(len(self.weights())))


class OneModelCallback(L.Callback):
    """A callback written for one model (no ``per_arm``)."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("val/twice", 2.0)


ARMS = [
    ["--model.lr", "0.1", "--model.l2", "0.01", *seeded(0)],
    ["--model.lr", "0.05", "--model.momentum", "0.9", *seeded(1)],
]


def pack_and_solo(base: list[str]) -> list[tuple[MemoryLogger, StepLosses, L.LightningModule, L.LightningModule]]:
    """Each arm trained in one pack, then alone through ``fit``'s own path."""
    arms = [build_arm(fit_args(base, settings)) for settings in ARMS]
    for arm in arms:
        arm.logger = MemoryLogger()
    assert [r.outcome for r in fit_pack(arms)] == ["finished"] * len(arms)
    results = []
    for arm, settings in zip(arms, ARMS, strict=True):
        steps = StepLosses()
        cli = build("fit", fit_args(base, settings), callbacks=[steps])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        results.append((arm.logger, steps, arm.model, cli.model))
    return results


@pytest.mark.parametrize("model", ["SmoothedMLP", "LassoMLP"])
def test_a_model_with_its_own_loss_or_objective_packs_and_equals_its_solo_fit(model: str) -> None:
    for logger, steps, packed, alone in pack_and_solo([*CLUSTERS, "--model", f"{HERE}.{model}"]):
        losses = logger.metrics["train/loss"]
        torch.testing.assert_close(
            torch.tensor([losses[step] for step in range(len(steps.losses))]), torch.tensor(steps.losses)
        )
        solo = dict(alone.named_parameters())
        for name, value in packed.named_parameters():
            torch.testing.assert_close(value, solo[name], rtol=1e-5, atol=1e-5)


def test_a_configured_per_arm_callback_runs_on_each_arm_as_alone() -> None:
    base = [*CLUSTERS, "--trainer.callbacks", "lit_d2l.callbacks.TrainAccuracy"]
    for logger, _, _, alone in pack_and_solo(base):
        accuracy = logger.metrics["train/acc"]
        assert len(accuracy) == 2  # one per epoch (2 epochs), at the epoch's last step as alone
        assert accuracy[max(accuracy)] == pytest.approx(float(alone.trainer.callback_metrics["train/acc"]), abs=1e-6)


def test_a_one_model_callback_or_hook_sends_the_arms_alone_saying_why() -> None:
    cases = {
        f"{HERE}.OneModelCallback works on one model": ["--trainer.callbacks", f"{HERE}.OneModelCallback"],
        "EpochHookMLP defines its own on_train_epoch_end": ["--model", f"{HERE}.EpochHookMLP"],
    }
    for why, extra in cases.items():
        units = plan_units(*({"model.lr": lr} for lr in (0.1, 0.2)))
        for unit in units:
            unit["args"] += extra
        packs = plan_packs(units, lambda u: u["settings"], lambda u: u["args"], budget=10**12)
        assert [len(p.units) for p in packs] == [1, 1], why
        assert why.rsplit(".", 1)[-1] in packs[0].reason, packs[0].reason
    units = plan_units(*({"model.lr": lr} for lr in (0.1, 0.2)))
    for unit in units:
        unit["args"] += ["--trainer.callbacks", "lit_d2l.callbacks.TrainAccuracy"]
    assert [len(p.units) for p in plan_packs(units, lambda u: u["settings"], lambda u: u["args"], budget=10**12)] == [2]
