"""Stop a fit at a step boundary on SIGTERM / SIGHUP / Ctrl-C / SIGUSR1, with a checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_d2l import interrupts

CHECKPOINT_DIR_TAG = "lit_d2l.checkpoint_dir"


class GracefulStop(L.Callback):
    """On a stop signal the current step completes, a checkpoint is saved and the fit ends KILLED.

    Lightning's own SIGTERM handling stops its loop between two steps (on every DDP rank); lit-d2l's
    signal handler turns SIGHUP, SIGINT and SIGUSR1 into that SIGTERM during a fit. The checkpoint is
    then saved here, holding the exact step (model, optimizer, loops, the data iterator's position),
    so ``lit-d2l fit --resume RUN_ID`` continues with the next step.
    """

    def __init__(self) -> None:
        self._active = False
        self.checkpoint: Path | None = None
        self.step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupts.enter_graceful()
        self._active = True
        set_tags = getattr(trainer.logger, "set_tags", None)
        if callable(set_tags):  # where --resume finds this run's checkpoints: stored now, a SIGKILL may follow
            set_tags({CHECKPOINT_DIR_TAG: str(checkpoint_dir(trainer).resolve())})
            _flush(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Every value logged up to a checkpoint is stored with it: a fit resumed from it after a SIGKILL
        # leaves no hole in the run's metric history.
        _flush(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Only where Lightning installed no SIGTERM handler of its own (e.g. on Windows).
        if interrupts.requested() is not None and not trainer.received_sigterm:
            self._save(trainer)
            raise interrupts.Interrupted(interrupts.take_requested() or 15, trainer.global_step, str(self.checkpoint))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._leave()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self._active:
            self._save(trainer)
        self._leave()

    def _save(self, trainer: L.Trainer) -> None:
        self.step = trainer.global_step
        self.checkpoint = checkpoint_dir(trainer) / f"interrupted-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(self.checkpoint)

    def _leave(self) -> None:
        if self._active:
            self._active = False
            interrupts.leave_graceful()


def _flush(trainer: L.Trainer) -> None:
    flush = getattr(trainer.logger, "flush", None)
    if callable(flush):
        flush()


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
