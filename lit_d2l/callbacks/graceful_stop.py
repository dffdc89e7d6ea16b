"""Stop a fit at a step boundary on SIGTERM / SIGHUP / Ctrl-C / SIGUSR1, with a checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from lit_d2l import interrupts

CHECKPOINT_DIR_TAG = "lit_d2l.checkpoint_dir"


class GracefulStop(L.Callback):
    """After a stop signal, the current step completes, a checkpoint is saved and :class:`Interrupted` is raised.

    The checkpoint holds the exact step (model, optimizer, loops, the data iterator's position),
    so ``lit-d2l fit --resume RUN_ID`` continues with the next step. Under DDP the ranks agree on
    stopping at the same step.
    """

    def __init__(self) -> None:
        self._active = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupts.enter_graceful()
        self._active = True
        set_tags = getattr(trainer.logger, "set_tags", None)
        if callable(set_tags):  # where --resume finds this run's checkpoints
            set_tags({CHECKPOINT_DIR_TAG: str(checkpoint_dir(trainer).resolve())})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        signum = interrupts.requested()
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(signum is not None, all=False)
            signum = signum or (interrupts.STOP_SIGNALS[0] if stop else None)
        if signum is None:
            return
        interrupts.take_requested()
        self._leave()
        path = checkpoint_dir(trainer) / f"interrupted-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        raise interrupts.Interrupted(signum, step=trainer.global_step, checkpoint=str(path))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._leave()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._leave()

    def _leave(self) -> None:
        if self._active:
            self._active = False
            interrupts.leave_graceful()


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where this fit's checkpoints go: ModelCheckpoint's folder, else the logger's run folder."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return Path(callback.dirpath)
    logger = trainer.logger
    if logger is not None and logger.version is not None:
        root = Path(logger.save_dir or trainer.default_root_dir)
        return root / str(logger.name) / str(logger.version) / "checkpoints"
    return Path(trainer.default_root_dir) / "checkpoints"
