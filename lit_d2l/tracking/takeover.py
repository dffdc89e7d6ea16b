"""One process at a time takes a stopped run over (``lit-d2l fit --resume``).

MLflow has no compare-and-set and a tag is last-writer-wins, so a takeover is claimed as sweeps claim a
pair: each process writes a claim tag keyed by its own id (:func:`~lit_d2l.tracking.liveness.takeover_marker`),
then reads the run again. Each reads after its own write, so of two processes claiming at once at least
one sees the other: at most one sees no rival and goes on. One that sees a live rival's claim (or the run
RUNNING again) deletes its own and backs off; its next look refuses in one line if the rival went on.
The claim stays until the winner's logger has made the run RUNNING with itself as owner
(:func:`settle`); then the run's live owner keeps later resumes out. MLflow reads a run's status before
its tags, in two statements, so the look after the write reads the run twice (see :func:`take_over`).
"""

from __future__ import annotations

import atexit
import contextlib
import random
import time
from collections.abc import Callable

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.tracking.liveness import takeover_claims, takeover_marker
from lit_d2l.tracking.races import set_tags


def take_over(uri: str, run_id: str, refusal: Callable[[Run], str], attempts: int = 6) -> None:
    """Claim run ``run_id`` for this process, or raise :class:`UserError` with why not.

    ``refusal(run)`` says why the run cannot be taken over whatever its claims (FINISHED, RUNNING), or "".
    """
    client = MlflowClient(uri)
    key, value = takeover_marker()

    def rival(run: Run) -> str:
        if why := refusal(run):
            return why
        others = [owner for claim, owner in takeover_claims(run.data.tags).items() if claim != key and owner]
        if others:
            who = others[0].describe()
            return f"run {run_id} is being resumed by {who}; wait for it to end (or stop it), then resume"
        return ""

    for attempt in range(attempts):
        if why := rival(client.get_run(run_id)):
            raise UserError(why)
        set_tags(client, run_id, {key: value})
        # A resume refused after its claim (e.g. changed settings) leaves no claim behind: withdrawn at exit. A process
        # resumes one run, so it holds one claim at a time.
        atexit.register(_release_at_exit, uri, run_id)
        try:
            # Twice: MLflow reads a run's status, then its tags, in two statements. A rival that took the run over
            # between them (RUNNING, then its claim deleted) shows in neither; the second read's status shows it.
            contended = bool(rival(client.get_run(run_id)) or rival(client.get_run(run_id)))
        except BaseException:  # stopped before the claim settled: hold nothing
            release(uri, run_id)
            raise
        if not contended:
            return
        release(uri, run_id)  # a rival claimed at the same time: back off, then look again
        time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    raise UserError(f"run {run_id} is being resumed by other processes at the same time; try again once they end")


def settle(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """Called once this process owns the run (RUNNING, its owner tag): drop its claim and those of processes
    gone, as read in ``tags`` (the run's tags read as it was taken over)."""
    key, _ = takeover_marker()
    for claim, owner in takeover_claims(tags).items():
        if claim == key or owner is None:
            _delete(client, run_id, claim)
    atexit.unregister(_release_at_exit)  # settled: nothing of this process's is left to withdraw


def release(uri: str, run_id: str) -> None:
    """Withdraw this process's claim on a run (it backed off, or stopped before taking the run over)."""
    atexit.unregister(_release_at_exit)
    _delete(MlflowClient(uri), run_id, takeover_marker()[0])


def _release_at_exit(uri: str, run_id: str) -> None:
    with contextlib.suppress(Exception):  # an unreachable store at exit: the claim of a process gone is ignored
        release(uri, run_id)


def _delete(client: MlflowClient, run_id: str, key: str) -> None:
    with contextlib.suppress(MlflowException):  # already gone
        client.delete_tag(run_id, key)
