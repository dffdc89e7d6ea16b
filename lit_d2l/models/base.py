"""The LightningModule every lit-d2l model builds on (D2L 3.2.2's ``Module``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from lit_d2l.errors import ConfigError, require


class D2LModule(L.LightningModule):
    """Loss, minibatch SGD and the metric names of lit-d2l: ``train/loss``, ``val/loss``, ``test/loss``.

    ``train/loss`` is logged every step (rank 0's batch); ``train/loss_epoch`` is its mean over each
    epoch, and epoch-level metrics are averaged over all DDP ranks.
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__()
        require(lr > 0, f"model.lr must be > 0, got {lr}")
        require(0 <= momentum < 1, f"model.momentum must be in [0, 1), got {momentum}")
        require(weight_decay >= 0, f"model.weight_decay must be >= 0, got {weight_decay}")
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.log("val/loss", self.loss(self(*batch[:-1]), batch[-1]), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.log("test/loss", self.loss(self(*batch[:-1]), batch[-1]), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def datamodule_attr(self, name: str) -> Any:
        """An attribute of the attached DataModule (e.g. ``num_inputs``), for shapes left to the data."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if not hasattr(datamodule, name):
            raise ConfigError(f"{type(self).__name__} needs model.{name}: set it, or use a DataModule that provides it")
        return getattr(datamodule, name)

    def describe(self) -> dict[str, str]:
        """Human-readable learned quantities, printed by the CLI at the end of a run."""
        return {}
