"""Stop a fit at a step boundary on SIGTERM / SIGHUP / Ctrl-C / SIGUSR1, with a checkpoint to resume from."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_d2l.callbacks.stored_first import commit, flush_logger
from lit_d2l.processes import interrupts

CHECKPOINT_DIR_TAG = "lit_d2l.checkpoint_dir"
#: How a stop's checkpoint is named: ``interrupted-step=45.ckpt``.
STOP_PREFIX = "interrupted-step="


class GracefulStop(L.Callback):
    """On a stop signal the current step completes, a checkpoint is saved and the fit ends KILLED.

    Lightning's own SIGTERM handling stops its loop between two steps (on every DDP rank); lit-d2l's
    signal handler turns SIGHUP, SIGINT and SIGUSR1 into that SIGTERM during a fit. The checkpoint is
    then saved here, holding the exact step (model, optimizer, loops, the data iterator's position),
    so ``lit-d2l fit --resume RUN_ID`` continues with the next step.

    Lightning stops cleanly between two training steps, or after an epoch's end (its validation and
    epoch metrics done); a stop inside validation would be resumed without the rest of that epoch's
    end, and one right after a mid-epoch validation resumes with later steps numbered one too many. So
    from the start of a step that validation or the epoch's end follows, a SIGTERM is held here and
    handed to Lightning at the epoch's end or the next step's start: it then stops after the epoch's
    end, or after that next step. In a fit of several processes (DDP) the ranks instead decide together at each
    step's start whether any has noted a stop, and stop there, all at one step (:func:`rank_stop`).
    """

    def __init__(self) -> None:
        self._active = False
        self.checkpoint: Path | None = None
        self.step: int | None = None
        self._lightning_handler: Any = None  # Lightning's SIGTERM handler while the signal is held here
        self._held = False
        self._resumed_from: Path | None = None  # the stop's checkpoint this fit goes on from, if any

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupts.enter_graceful()
        self._active = True
        main = threading.current_thread() is threading.main_thread()
        if trainer.world_size > 1 and main and callable(signal.getsignal(signal.SIGTERM)):  # until its teardown
            signal.signal(signal.SIGTERM, rank_stop)
        resumed_from = Path(trainer.ckpt_path) if trainer.ckpt_path else None
        self._resumed_from = resumed_from if resumed_from and resumed_from.name.startswith(STOP_PREFIX) else None
        set_tags = getattr(trainer.logger, "set_tags", None)
        if callable(set_tags):  # where --resume finds this run's checkpoints: stored now, a SIGKILL may follow
            set_tags({CHECKPOINT_DIR_TAG: str(checkpoint_dir(trainer).resolve())})
            flush_logger(trainer)
        deliver_pending(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Every value logged up to a checkpoint is stored with it: a fit resumed from it after a SIGKILL
        # leaves no hole in the run's metric history.
        flush_logger(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.world_size > 1:  # every rank stops here, at one step, once any rank has noted a stop (rank_stop)
            if trainer.strategy.reduce_boolean_decision(interrupts.requested() is not None, all=False):
                self._stop_here(trainer)
            return
        if batch_idx + 1 >= trainer.num_training_batches or _validation_follows(trainer, batch_idx):
            self._hold_signals()  # until the validation or the epoch's end is done
        else:
            self._release()
        # Only where Lightning installed no SIGTERM handler of its own (e.g. on Windows).
        holding = self._lightning_handler is not None
        if interrupts.requested() is not None and not trainer.received_sigterm and not holding:
            self._stop_here(trainer)

    def _stop_here(self, trainer: L.Trainer) -> None:
        self._save(trainer)
        signum = interrupts.take_requested() or signal.SIGTERM
        raise interrupts.Interrupted(signum, trainer.global_step, str(self.checkpoint))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._release()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._leave()
        self._past_resumed_from(trainer)

    def _past_resumed_from(self, trainer: L.Trainer) -> None:
        """Delete the stop's checkpoint this fit went on from, once the fit is past it (at its end or at the next
        stop's checkpoint): ``validate --run`` and ``--resume`` take the newest checkpoint, which must not be it."""
        if self._resumed_from is not None and trainer.is_global_zero:
            self._resumed_from.unlink(missing_ok=True)
        self._resumed_from = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self._active:
            self._save(trainer)
        self._leave()

    def _save(self, trainer: L.Trainer) -> None:
        self.step = trainer.global_step
        self.checkpoint = checkpoint_dir(trainer) / f"{STOP_PREFIX}{trainer.global_step}.ckpt"
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # the whole state, to resume from
        commit(trainer)  # in place now: everything logged before it is stored (a stop comes at a clean point)
        if self._resumed_from != self.checkpoint:
            self._past_resumed_from(trainer)

    def _hold_signals(self) -> None:
        """Take SIGTERM from Lightning's handler (main thread only, where Lightning installed one)."""
        if self._lightning_handler is not None or threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and not isinstance(handler, interrupts.StopSignals):
            self._lightning_handler, self._held = handler, False
            signal.signal(signal.SIGTERM, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self._held = True
        interrupts.handle(signum, frame)  # noted (or, at a second signal, a stop now)

    def _release(self, deliver: bool = True) -> None:
        """Give SIGTERM back to Lightning, and with ``deliver`` the signal held meanwhile, if any: it stops at its
        next check. Leaving the fit, a signal still held is acted on after it (``interrupts.raise_if_requested``)."""
        handler, self._lightning_handler = self._lightning_handler, None
        if handler is None:
            return
        signal.signal(signal.SIGTERM, handler)
        if self._held and deliver:
            self._held = False
            interrupts.deliver(handler)

    def _leave(self) -> None:
        self._release(deliver=False)
        if self._active:
            self._active = False
            interrupts.leave_graceful()


class PendingStop(L.Callback):
    """A fit without :class:`GracefulStop` (a pack of a sweep) that still stops for a signal noted before it began."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        deliver_pending(trainer)


def rank_stop(signum: int, frame: Any) -> None:
    """SIGTERM's handler in each process of a fit of several (DDP), in place of Lightning's: it only notes the stop.
    Lightning's handler broadcasts from inside the signal, and rank 0 alone raises at the end of the step it was
    signalled in; Ctrl-C or a scheduler signals every process of the group, at other points of their steps, so the
    ranks waited on each other's collectives for good. The ranks decide together at the next step's start instead
    (:meth:`GracefulStop.on_train_batch_start`)."""
    interrupts.handle(signum, frame)  # noted (a second signal stops at once)


def deliver_pending(trainer: L.Trainer) -> None:
    """A stop signal noted before Lightning's SIGTERM handler was there (a sweep's worker notes every signal, see
    :func:`~lit_d2l.processes.interrupts.deferred`) is handed to it now: the fit stops at its first step boundary."""
    main = threading.current_thread() is threading.main_thread()  # where signal handlers live
    if main and interrupts.requested() is not None and not trainer.received_sigterm:
        interrupts.deliver(signal.getsignal(signal.SIGTERM))


def _validation_follows(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether Lightning validates after this step (every ``val_check_batch`` steps; time-based: unknown)."""
    every = trainer.val_check_batch
    return isinstance(every, int) and every > 0 and (batch_idx + 1) % every == 0


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
