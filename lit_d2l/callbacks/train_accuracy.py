"""``train/acc``: the accuracy on the whole training split, dropout off, whenever a fit validates (D2L 5.6)."""

from __future__ import annotations

from typing import ClassVar

import lightning as L
import torch


class TrainAccuracy(L.Callback):
    """Log ``train/acc`` next to ``val/acc``: the same model, in evaluation mode, on the training examples.

    The training loss logged during an epoch is measured with dropout on and while the weights move, so
    it is no measure of how well the model fits its training set; the train − val gap of D2L 5.6 is this
    accuracy minus ``val/acc``. It costs one forward pass over the training split per validation. Needs a
    classifier (``num_outputs``) and a lit-d2l DataModule (its ``batches``); else it logs nothing.

    It works on a pack as on one model: there the outputs and labels carry the arm axis first, so the
    counts below are one per arm, and the pack's ``log`` sends each arm's value to that arm's run.
    """

    #: Packed sweeps keep this callback (lit_d2l.sweeps.packs.plan): its hooks handle a pack's arms too.
    per_arm: ClassVar[bool] = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = getattr(trainer.datamodule, "batches", None)
        if trainer.sanity_checking or trainer.state.fn != "fit" or not callable(batches):
            return
        if not getattr(pl_module, "num_outputs", None):  # not a classifier
            return
        device = pl_module.device
        correct, count = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():  # validation runs in evaluation mode: dropout is off
            for *X, y in batches("train"):
                y = y.to(device)
                predicted = pl_module(*(x.to(device) for x in X)).argmax(dim=-1)
                correct = correct + (predicted == y).sum(dim=-1)
                count = count + y.shape[-1]
        # This process's shard under DDP: the counts of every rank make the split's accuracy.
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        count = trainer.strategy.reduce(count, reduce_op="sum")
        pl_module.log("train/acc", correct / count, sync_dist=True)
