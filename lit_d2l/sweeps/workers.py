"""Worker processes for a sweep: supervised one by one, and never outliving the sweep.

Each worker runs one task at a time and answers over its own pipe, so a worker that dies (OOM
kill, SIGKILL) costs only the task it held: that task is reported failed, a new worker takes its
place and the sweep goes on. Workers die with their parent: on Linux the kernel sends them SIGTERM
when it exits (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread notices the parent is gone.
In a worker a stop signal is only noted (:func:`~lit_d2l.processes.interrupts.deferred`): its fit stops at the
next step boundary, or it stops between tasks, so its run ends KILLED, not RUNNING (nor FAILED); the
supervisor escalates to SIGKILL after :data:`STOP_GRACE_S`. A worker ends with ``os._exit`` once its
runs are ended: tearing down an interpreter that imported torch, Lightning and MLflow takes seconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from lit_d2l.processes import interrupts
from lit_d2l.processes.guard import parent_death_signal

#: How long a busy worker has to stop (its fit ends the step, its runs end KILLED) before it is killed.
STOP_GRACE_S = 3.0
#: How often an idle worker, or the supervisor, looks for a noted stop signal.
POLL_S = 0.1


@dataclass
class _Slot:
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    setting: Any
    task: Any = None


def supervise(
    tasks: list[Any],
    settings: list[Any],
    report: Callable[[Any], None],
    died: Callable[[Any, str], Any],
    initializer: Callable[[Any], Callable[[Any], Any]],
) -> None:
    """Run every task in ``len(settings)`` worker processes; ``report`` each result.

    ``initializer(setting)`` prepares a worker (e.g. binds it to a GPU) and returns what runs a task there
    (``run(task)``, a result); a task whose worker died is reported as ``died(task, how)``. On any exception
    (Ctrl-C, SIGTERM) the workers are stopped too.
    """
    context = multiprocessing.get_context("spawn")
    queue = deque(tasks)

    def start(setting: Any) -> _Slot:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(theirs, initializer, setting, os.getpid()), name="lit-d2l worker"
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
        with interrupts.deferred():  # a stop signal is acted on here, between two waits, not inside a report
            for slot in slots:
                hand_out(slot)
            while busy := [slot for slot in slots if slot.task is not None]:
                interrupts.raise_if_requested()
                ready = wait([slot.conn for slot in busy] + [slot.process.sentinel for slot in busy], POLL_S)
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
                    hand_out(slots[index])  # none left: the slot, its worker gone, stays idle
    finally:
        for slot in _stop(slots):  # killed with a task: its runs, left RUNNING, are closed
            died(slot.task, "stopped")


def _stop(slots: list[_Slot], grace_s: float = STOP_GRACE_S) -> list[_Slot]:
    """Idle workers are told to exit; busy ones (after an exception) get SIGTERM, then SIGKILL; returns
    the busy ones that had to be killed."""
    for slot in slots:
        with contextlib.suppress(OSError, ValueError):
            if slot.task is None:
                slot.conn.send(None)
            elif slot.process.is_alive():
                slot.process.terminate()
    deadline = time.monotonic() + grace_s
    killed = []
    for slot in slots:
        slot.process.join(max(0.0, deadline - time.monotonic()))
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
            if slot.task is not None:
                killed.append(slot)
        slot.conn.close()
    return killed


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"its worker process was killed by {signal.Signals(-exitcode).name}"
    return f"its worker process exited with status {exitcode}"


def _worker_main(
    conn: Connection, initializer: Callable[[Any], Callable[[Any], Any]], setting: Any, parent: int
) -> None:
    die_with_parent(parent)
    code = 0
    with interrupts.stop_signals_handled(), interrupts.deferred():
        try:
            run = initializer(setting)
            while interrupts.requested() is None:
                if conn.poll(POLL_S):
                    task = conn.recv()
                    if task is None:
                        break
                    conn.send(run(task))
        # The supervisor is gone, or a stop signal ended the task (Interrupted, Lightning's SIGTERMException): KILLED
        except (EOFError, OSError, SystemExit):
            code = 128 + signal.SIGTERM
        if interrupts.requested() is not None:
            code = 128 + (interrupts.take_requested() or signal.SIGTERM)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def die_with_parent(parent: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM this process when ``parent`` exits (its fit stops at the next step, its run ends KILLED);
    exit for good ``grace_s`` later."""
    kernel_signals = parent_death_signal()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        if not kernel_signals:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    if os.getppid() != parent:  # the parent died before we got here
        os._exit(128 + signal.SIGTERM)
    threading.Thread(target=watch, name="lit-d2l parent watchdog", daemon=True).start()
