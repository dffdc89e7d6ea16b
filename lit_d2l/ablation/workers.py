"""Worker processes for a sweep: supervised one by one, and never outliving the sweep.

Each worker runs one task at a time and answers over its own pipe, so a worker that dies (OOM
kill, SIGKILL) costs only the task it held: that task is reported failed, a new worker takes its
place and the sweep goes on. Workers die with their parent: on Linux the kernel sends them SIGTERM
when it exits (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread notices the parent is gone.
A SIGTERM stops a worker's fit at a step boundary, so its run ends KILLED, not RUNNING.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from lit_d2l.guard import parent_death_signal
from lit_d2l.interrupts import stop_signals_handled


@dataclass
class _Slot:
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    setting: Any
    task: Any = None


def supervise(
    tasks: list[Any],
    settings: list[Any],
    run: Callable[[Any], Any],
    report: Callable[[Any], None],
    died: Callable[[Any, str], Any],
    initializer: Callable[[Any], None],
) -> None:
    """Run ``run(task)`` for every task in ``len(settings)`` worker processes; ``report`` each result.

    ``initializer(setting)`` prepares a worker (e.g. binds it to a GPU); a task whose worker died is
    reported as ``died(task, how)``. On any exception (Ctrl-C, SIGTERM) the workers are stopped too.
    """
    context = multiprocessing.get_context("spawn")
    queue = deque(tasks)

    def start(setting: Any) -> _Slot:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(theirs, run, initializer, setting, os.getpid()), name="lit-d2l worker"
        )
        process.start()
        theirs.close()
        return _Slot(process, ours, setting)

    def hand_out(slot: _Slot) -> None:
        slot.task = queue.popleft() if queue else None
        if slot.task is not None:
            slot.conn.send(slot.task)

    slots = [start(setting) for setting in settings[: max(1, min(len(settings), len(tasks)))]]
    try:
        for slot in slots:
            hand_out(slot)
        while busy := [slot for slot in slots if slot.task is not None]:
            ready = wait([slot.conn for slot in busy] + [slot.process.sentinel for slot in busy])
            for index, slot in enumerate(slots):
                if slot.task is None or not (slot.conn in ready or slot.process.sentinel in ready):
                    continue
                try:
                    result = slot.conn.recv() if slot.conn.poll() else None
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    report(result)
                    hand_out(slot)
                    continue
                slot.process.join(5)
                report(died(slot.task, _how(slot.process.exitcode)))
                slot.conn.close()
                slots[index] = start(slot.setting) if queue else slot
                if queue:
                    hand_out(slots[index])
                else:
                    slot.task = None
    finally:
        _stop(slots)


def _stop(slots: list[_Slot], grace_s: float = 15.0) -> None:
    """Idle workers are told to exit; busy ones (after an exception) get SIGTERM, then SIGKILL."""
    for slot in slots:
        with contextlib.suppress(OSError, ValueError):
            if slot.task is None:
                slot.conn.send(None)
            elif slot.process.is_alive():
                slot.process.terminate()
    deadline = time.monotonic() + grace_s
    for slot in slots:
        slot.process.join(max(0.0, deadline - time.monotonic()))
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.conn.close()


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"its worker process was killed by {signal.Signals(-exitcode).name}"
    return f"its worker process exited with status {exitcode}"


def _worker_main(
    conn: Connection, run: Callable[[Any], Any], initializer: Callable[[Any], None], setting: Any, parent: int
) -> None:
    die_with_parent(parent)
    initializer(setting)
    with stop_signals_handled():
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            conn.send(run(task))


def die_with_parent(parent: int, grace_s: float = 4.0) -> None:
    """SIGTERM this process when ``parent`` exits (its fit stops at the next step, its run ends KILLED);
    exit for good ``grace_s`` later."""
    kernel_signals = parent_death_signal()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        if not kernel_signals:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    if os.getppid() != parent:  # the parent died before we got here
        os._exit(128 + signal.SIGTERM)
    threading.Thread(target=watch, name="lit-d2l parent watchdog", daemon=True).start()
