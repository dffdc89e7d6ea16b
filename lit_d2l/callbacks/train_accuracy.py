"""``train/acc``: the accuracy on the whole training split, dropout off, whenever a fit validates (D2L 5.6)."""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy


class TrainAccuracy(L.Callback):
    """Log ``train/acc`` next to ``val/acc``: the same model, in evaluation mode, on the training examples.

    The training loss logged during an epoch is measured with dropout on and while the weights move, so
    it is no measure of how well the model fits its training set; the train − val gap of D2L 5.6 is this
    accuracy minus ``val/acc``. It costs one forward pass over the training split per validation. Needs a
    classifier (``num_outputs``) and a lit-d2l DataModule (its ``batches``); else it logs nothing.
    """

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = getattr(trainer.datamodule, "batches", None)
        num_classes = getattr(pl_module, "num_outputs", None)
        if trainer.sanity_checking or trainer.state.fn != "fit" or not callable(batches) or not num_classes:
            return
        accuracy = MulticlassAccuracy(num_classes, average="micro").to(pl_module.device)
        with torch.no_grad():  # validation runs in evaluation mode: dropout is off
            for X, y in batches("train"):
                accuracy.update(pl_module(X.to(pl_module.device)), y.to(pl_module.device))
        pl_module.log("train/acc", accuracy.compute(), sync_dist=True)
