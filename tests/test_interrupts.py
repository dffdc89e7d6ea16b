"""A stop signal is never lost, wherever Python was when it arrived."""

from __future__ import annotations

import gc
import signal
import sys

import pytest

from lit_d2l.processes import interrupts
from lit_d2l.processes.interrupts import Interrupted, stop_signals_handled


class ArrivesDuringFinalizer:
    """An object whose ``__del__`` is running when the signal arrives (as a weakref callback or GC may be)."""

    def __del__(self) -> None:
        interrupts.handle(signal.SIGINT, None)  # the handler raises here, where Python ignores exceptions


class FailsInFinalizer:
    def __del__(self) -> None:
        raise ValueError("a finalizer's own error")


def test_a_stop_raised_where_python_ignores_it_is_acted_on_at_the_next_check(monkeypatch) -> None:
    ignored: list = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)  # where Python reports "Exception ignored in ..."
    with stop_signals_handled():
        obj = FailsInFinalizer()
        del obj
        assert [type(u.exc_value) for u in ignored] == [ValueError]  # other errors Python ignores are reported
        obj = ArrivesDuringFinalizer()
        del obj
        gc.collect()
        assert len(ignored) == 1  # the stop's raise went nowhere, and is not printed with a traceback ...
        with pytest.raises(Interrupted) as stop:  # ... but it was not lost: the next check acts on it
            interrupts.raise_if_requested()
    assert stop.value.signum == signal.SIGINT
    assert sys.unraisablehook == ignored.append  # put back


def test_a_noted_ctrl_c_handed_to_lightning_outside_a_graceful_fit_stops_as_ctrl_c() -> None:
    """A pack (no GracefulStop) hands a stop noted before it began to Lightning's SIGTERM handler, which chains
    lit-d2l's: the stop is the Ctrl-C that was noted (exit status 130), not a SIGTERM (143)."""

    def lightnings_handler(signum, frame) -> None:  # Lightning's composed SIGTERM handler calls the one before it
        interrupts.installed()(signum, frame)

    with stop_signals_handled():
        with interrupts.deferred():
            interrupts.handle(signal.SIGINT, None)  # noted, as a sweep's claim notes it
        with pytest.raises(Interrupted) as stop:
            interrupts.deliver(lightnings_handler)
    assert stop.value.signum == signal.SIGINT and stop.value.code == 130
