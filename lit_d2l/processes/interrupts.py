"""Stopping on a signal without losing work: SIGTERM, SIGHUP, SIGINT (Ctrl-C) and SLURM's SIGUSR1.

While a fit is training, a stop signal is only noted and handed to Lightning's SIGTERM handling, which ends
the current step (:class:`~lit_d2l.callbacks.GracefulStop` holds it to a clean point and saves a checkpoint);
the fit then ends in :class:`Interrupted`, so
``lit-d2l fit --resume RUN_ID`` continues exactly there. Anywhere else (or at a second signal) the
signal raises :class:`Interrupted` at once, and stays noted in case that raise landed where Python ignores
it. Either way the MLflow run ends KILLED. A sweep's worker process runs :func:`deferred`: there a signal is
only ever noted, and acted on where stopping is clean.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

#: Pre-emption (SIGTERM, SLURM's --signal=USR1@N), a closed terminal (SIGHUP), Ctrl-C (SIGINT).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT", "SIGUSR1") if hasattr(signal, name)
)


class Interrupted(SystemExit):
    """A run stopped by a signal. A SystemExit, so Lightning passes it through unchanged."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: str | None = None) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.run_id: str | None = None  # the MLflow run it stopped, once known
        self.store_option = ""  # " --tracking.uri URI" when the run is not in the default store
        self.run_status = "KILLED"  # RUNNING where the store could not be told (a tracking server away)
        self.reason: str | None = None  # why, when lit-d2l stopped the fit itself (see stop_fit)
        self.rerun: str | None = None  # the command that goes on from here, when not ``fit --resume`` (e.g. ``cv``)
        self.recorded_run_id: str | None = None  # a run the stopped command had recorded (a sweep's or cv's parent)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        what = f"stopped: {self.reason}," if self.reason else f"interrupted by {self.signal_name}"
        where = f" at step {self.step}" if self.step is not None else ""
        saved = f"; checkpoint {self.checkpoint}" if self.checkpoint and not self.rerun else ""
        run = f"; MLflow run {self.run_id} is KILLED" if self.run_id else ""
        if self.run_id and self.run_status != "KILLED":
            run = f"; MLflow run {self.run_id} stays {self.run_status} until a lit-d2l command finds its process gone"
        resume = self.rerun or f"lit-d2l fit --resume {self.run_id}{self.store_option}"
        hint = f"; continue it with: {resume}" if self.rerun or (self.run_id and self.checkpoint) else ""
        return f"{what}{where}{saved}{run}{hint}"


class StopSignals:
    """lit-d2l's handler of the stop signals, and what it has noted. :func:`stop_signals_handled` installs one for
    a block; the functions below act on the installed one (none installed: the process's default handling)."""

    def __init__(self) -> None:
        self.graceful = 0  # fits currently able to stop at a step boundary
        self.requested: int | None = None  # the signal waiting to be acted on
        self.forwarded = False  # a SIGTERM handed to Lightning's handler, so that it stops at the step boundary
        self.shield = 0  # writes that must not be cut short (a run's buffered metrics going to the store)
        self.held: int | None = None  # a signal that arrived during them
        self.deferred = 0  # blocks where every stop signal is only noted (see deferred())

    def __call__(self, signum: int, frame: Any) -> None:
        """During a fit, note the signal and make sure Lightning's SIGTERM handler sees it (Lightning stops its
        loop at the next step boundary, on every DDP rank); anywhere else, or at a second signal, stop now
        (after any shielded write)."""
        if self.shield:
            self.held = self.held or signum
            return
        if self.graceful or self.deferred:
            if self.requested is None:
                self.requested = signum
                if signum != signal.SIGTERM:  # SIGINT, SIGHUP, SIGUSR1: Lightning stops for a SIGTERM only
                    self.forward(signal.getsignal(signal.SIGTERM))
                return
            if (self.forwarded and signum == signal.SIGTERM) or self.deferred:
                return
        if self.forwarded and self.requested is not None:  # the noted stop, handed on as a SIGTERM: not a new one
            signum = self.requested
        # Noted as well as raised: a raise that lands where Python ignores exceptions (a weakref callback, __del__:
        # "Exception ignored in ...") is acted on at the next check (a fit's first step, raise_if_requested).
        self.requested, self.forwarded = signum, False
        raise Interrupted(signum)

    def forward(self, handler: Any) -> None:
        """Hand the noted stop to ``handler`` (Lightning's SIGTERM handler, which chains this one) as a SIGTERM:
        noted once, not taken for a second signal."""
        if callable(handler) and handler is not self:
            self.forwarded = True
            try:
                handler(signal.SIGTERM, None)
            finally:
                self.forwarded = False


def installed() -> StopSignals:
    """The installed :class:`StopSignals`; where none is (another thread, a library caller), a fresh one that
    notes nothing any handler would read."""
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, StopSignals) else StopSignals()


def requested() -> int | None:
    """The stop signal received while a fit could stop gracefully, if any."""
    return installed().requested


def enter_graceful() -> None:
    """A fit that can stop at a step boundary starts: stop signals are noted, not raised."""
    installed().graceful += 1


def leave_graceful() -> None:
    handler = installed()
    handler.graceful = max(0, handler.graceful - 1)


def take_requested() -> int | None:
    """The pending stop signal, cleared; the caller stops (e.g. raises :class:`Interrupted`)."""
    handler = installed()
    signum, handler.requested, handler.forwarded = handler.requested, None, False
    return signum


def deliver(handler: Any) -> None:
    """Hand a noted stop signal to ``handler`` (Lightning's SIGTERM handler, held back until a point where its
    stop is clean) as a SIGTERM: noted once, not taken for a second signal."""
    installed().forward(handler)


def stop_fit() -> bool:
    """Stop the running fit as a SIGTERM does (at a step boundary, with a checkpoint to resume from); False where
    no fit can stop so (none running, or not on the main thread)."""
    handler = installed()
    main = threading.current_thread() is threading.main_thread()
    if not handler.graceful or handler.requested is not None or not main:
        return False
    handler(signal.SIGTERM, None)  # noted as a SIGTERM that arrived now
    handler.forward(signal.getsignal(signal.SIGTERM))  # and Lightning's handler stops the loop
    return True


def raise_if_requested() -> None:
    """Act on a stop signal that arrived while a fit was finishing on its own."""
    signum = take_requested()
    if signum is not None:
        raise Interrupted(signum)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block a stop signal must not cut short (e.g. writing a run's metrics): the signal takes effect after it."""
    handler = installed()
    handler.shield += 1
    try:
        yield
    finally:
        handler.shield -= 1
        if handler.shield == 0 and handler.held is not None:
            signum, handler.held = handler.held, None
            handler(signum, None)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block where stop signals, a second one included, are only noted, never raised by the handler: the block
    acts on :func:`requested` at points where stopping is clean. A signal raised from a handler lands anywhere,
    also in a weakref callback or ``__del__``, where Python prints "Exception ignored" and carries on; a sweep's
    workers use this, and their supervisor is the one that escalates (SIGKILL after a grace)."""
    handler = installed()
    handler.deferred += 1
    try:
        yield
    finally:
        handler.deferred -= 1


def handle(signum: int, frame: Any) -> None:
    """Pass a signal to the installed :class:`StopSignals` (as if it had arrived now)."""
    installed()(signum, frame)


@contextlib.contextmanager
def stop_signals_handled() -> Iterator[None]:
    """Install the handlers for the block (main thread only), then restore the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handler = StopSignals()
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    report_unraisable = sys.unraisablehook

    def unraisable(what: Any) -> None:
        # A stop raised where Python ignores exceptions (a weakref callback, __del__) is noted and acted on at the
        # next check (StopSignals.__call__): not printed as "Exception ignored in ..." with its traceback.
        if not isinstance(what.exc_value, Interrupted):
            report_unraisable(what)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = report_unraisable
        for signum, handler in previous.items():
            signal.signal(signum, handler)
