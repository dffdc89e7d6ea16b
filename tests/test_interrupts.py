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
        interrupts.handle(signal.SIGINT, None)  # the handler raises here; Python prints it and goes on


def test_a_stop_raised_where_python_ignores_it_is_acted_on_at_the_next_check(monkeypatch) -> None:
    ignored: list = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)  # where Python reports "Exception ignored in ..."
    with stop_signals_handled():
        obj = ArrivesDuringFinalizer()
        del obj
        gc.collect()
        assert [type(u.exc_value) for u in ignored] == [Interrupted]  # the raise went nowhere ...
        with pytest.raises(Interrupted) as stop:  # ... but the stop was not lost: the next check acts on it
            interrupts.raise_if_requested()
    assert stop.value.signum == signal.SIGINT
