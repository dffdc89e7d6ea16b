"""A checkpoint file appears only once every value logged before it is in the store.

Lightning saves an epoch's checkpoint before it hands the epoch's values to the logger
(``ModelCheckpoint`` saves in ``on_train_epoch_end`` or ``on_validation_end``; the epoch's
``*_epoch`` values and those logged in ``on_train_epoch_end`` reach the logger after), and a step's
checkpoint before that step's values. A fit resumed from such a checkpoint does not compute those
values again, so a SIGKILL between the file and the logger's next write left a hole in the run's
history for good. Here a checkpoint is written beside its name (``NAME.pending<N>``) and moved into
place, and old checkpoints removed, only at the next step or epoch start, or the fit's end, after a
flush of the logger. A SIGKILL in between leaves the previous checkpoint, from which the resumed fit
computes everything after it again (the logger skips what the run already stored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.plugins import CheckpointIO, TorchCheckpointIO

PENDING = ".pending"


class StoredFirst(L.Callback):
    """Holds the checkpoint files a fit writes (local files; elsewhere they are written at once) until the
    values logged before them are stored; see the module docstring."""

    def __init__(self) -> None:
        self._io: _PendingIO | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        io = trainer.strategy.checkpoint_io
        if stage == "fit" and type(io) is TorchCheckpointIO:  # a plugin's own IO (async, cloud) is left alone
            self._io = _PendingIO(io)
            trainer.strategy.checkpoint_io = self._io

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        commit(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        commit(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        commit(trainer)  # after ModelCheckpoint's on_train_end (save_last)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._io is not None:  # the values before them may not all be logged: the previous checkpoints stay
            self._io.discard()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._io is not None and trainer.strategy.checkpoint_io is self._io:
            self._io.discard()
            trainer.strategy.checkpoint_io = self._io.inner
        self._io = None


def commit(trainer: L.Trainer) -> None:
    """Store what the logger holds, then put the checkpoints written since in place (and remove the old ones)."""
    io = trainer.strategy.checkpoint_io
    if not isinstance(io, _PendingIO) or not io.pending:
        return
    flush_logger(trainer)
    io.commit()


def flush_logger(trainer: L.Trainer) -> None:
    """Store what the fit's logger holds now (one with a ``flush``: :class:`~lit_d2l.tracking.TrackingLogger`)."""
    flush = getattr(trainer.logger, "flush", None)
    if callable(flush):
        flush()


class _PendingIO(CheckpointIO):
    """Lightning's file IO, with writes kept beside their names and removals held until :meth:`commit`."""

    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner
        self.pending: list[tuple[str, str | None]] = []  # (path, where it was written; None: a removal), in order
        self._written = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # not a local file (no rename): written at once
            self.inner.save_checkpoint(checkpoint, path, storage_options)
            return
        self._written += 1
        written = f"{path}{PENDING}{self._written}"
        self.inner.save_checkpoint(checkpoint, written, storage_options)
        self.pending.append((str(path), written))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        return self.inner.load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path: Any) -> None:
        if "://" in str(path):
            self.inner.remove_checkpoint(path)
        else:
            self.pending.append((str(path), None))

    def teardown(self) -> None:
        self.inner.teardown()

    def commit(self) -> None:
        pending, self.pending = self.pending, []
        for path, written in pending:
            if written is None:
                self.inner.remove_checkpoint(path)
            else:
                os.replace(written, path)  # atomic: the name holds the whole file or none of it

    def discard(self) -> None:
        pending, self.pending = self.pending, []
        for _, written in pending:
            if written is not None:
                Path(written).unlink(missing_ok=True)


def remove_leftovers(directory: Path) -> None:
    """Delete checkpoint files a killed fit wrote but never put in place (its resume calls this)."""
    for leftover in directory.glob(f"*.ckpt{PENDING}*") if directory.is_dir() else ():
        leftover.unlink(missing_ok=True)
