"""Sweeps in MLflow: the parent run, its children, and claims that run each arm × seed exactly once.

MLflow has no compare-and-set, so a claim is made by creating a run and then reading: a process
that sees another live claim on the same pair (or parent) backs off and deletes its own. Of two
processes claiming at once at least one sees the other, so two can never both hold a pair; if
both back off, both retry after a random pause.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from lit_d2l.errors import UserError
from lit_d2l.processes import interrupts
from lit_d2l.tracking.liveness import KIND_TAG, PARENT_TAG, close_stale_runs, owner_gone, owner_tags, this_process
from lit_d2l.tracking.paging import all_experiments, all_runs
from lit_d2l.tracking.runs import open_store
from lit_d2l.tracking.store import resolve_tracking_uri

SWEEP_TAG = "lit_d2l.sweep_id"
#: The kind of the run that tests a sweep's selected arm (``lit-d2l report --select METRIC --test``).
TEST_KIND = "selection-test"


Result = TypeVar("Result")


@dataclass
class Child:
    """One arm × seed run of a sweep, as recorded."""

    run_id: str
    arm: str
    seed: int
    status: str
    outcome: str
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int = 0  # ms since the epoch, as MLflow records it
    params: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """RUNNING in a process that is still there."""
        return self.status == "RUNNING" and owner_gone(self.tags, self.start_time) is None

    @property
    def owner(self) -> str:
        return self.tags.get("lit_d2l.owner", "an unknown process")

    @property
    def owned_here(self) -> bool:
        """Started by this process (so not running elsewhere, whatever its status says)."""
        return self.tags.get("lit_d2l.owner") == str(this_process())


class SweepStore:
    """MLflow queries of lit-d2l sweeps."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.client = open_store(self.tracking_uri)

    def find_parent(self, experiment: str, sweep_id: str, kind: str = "sweep") -> str | None:
        """The newest parent run of ``sweep_id`` (a ``kind`` run: sweep, cross-validation) in ``experiment``, if any."""
        exp = self.client.get_experiment_by_name(experiment)
        runs = [] if exp is None else self._parents([exp.experiment_id], sweep_id, kind, newest_only=True)
        return runs[0].info.run_id if runs else None

    def resolve_parent(self, sweep: str) -> Run:
        """A parent run given its run id or its sweep id (searched in every experiment)."""
        try:
            run = self.client.get_run(sweep)
            if run.data.tags.get(KIND_TAG) == "sweep":
                return run
        except MlflowException as exc:  # not a run id: try it as a sweep id; any other error is real
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        experiments = [e.experiment_id for e in all_experiments(self.client)]
        runs = self._parents(experiments, sweep, "sweep", newest_only=True)
        if runs:
            return runs[0]
        ids = self._sweep_ids(experiments)
        named = [i for i in ids if re.fullmatch(rf"{re.escape(sweep)}-[0-9a-f]{{10}}", i)]  # a spec's name: its ids
        if len(named) == 1:
            return self._parents(experiments, named[0], "sweep", newest_only=True)[0]
        if named:
            raise UserError(
                f"{len(named)} sweeps in {self.tracking_uri} are named {sweep!r} (the spec or its base config changed "
                f"between them), ids{_newest(named)}; give one of them"
            )
        known = f"sweeps there{_newest(ids)}; give a sweep id, a spec's name or a parent run id" if ids else ""
        raise UserError(
            f"no sweep {sweep!r} in {self.tracking_uri}; "
            + (known or "it holds no sweeps yet: run lit-d2l ablate SPEC.yaml first")
        )

    def _sweep_ids(self, experiments: list[str]) -> list[str]:
        """The store's sweep ids, newest first."""
        runs = all_runs(self.client, experiments, f"tags.`{KIND_TAG}` = 'sweep'", ["attributes.start_time DESC"])
        return list(dict.fromkeys(run.data.tags.get(SWEEP_TAG, run.info.run_id) for run in runs))

    def children(self, parent: Run) -> list[Child]:
        return self.children_of(parent.info.run_id, parent.info.experiment_id)

    def close_stale(self, experiment_id: str, gone: Callable[[Run], str | None] | None = None) -> int:
        """Runs of the experiment left RUNNING by a process that is gone (or ``gone(run)`` says why) are
        KILLED; returns how many."""
        return len(close_stale_runs(self.client, [experiment_id], gone))

    def end_if_running(self, run_id: str, status: str) -> None:
        """End a run this process started, unless its fit already ended it."""
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def live_parents(self, experiment: str, sweep_id: str, kind: str = "sweep") -> list[Run]:
        """Parent runs of ``sweep_id`` (``kind`` runs) that a live process is running, oldest first."""
        exp = self.client.get_experiment_by_name(experiment)
        runs = [] if exp is None else self._parents([exp.experiment_id], sweep_id, kind, running=True)
        return [run for run in runs if owner_gone(run.data.tags, run.info.start_time or 0) is None]

    def _parents(
        self, experiments: list[str], sweep_id: str, kind: str, newest_only: bool = False, running: bool = False
    ) -> list[Run]:
        """The parent runs of ``sweep_id`` (``kind`` runs), oldest first; or only the newest; or only RUNNING ones."""
        where = f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`{KIND_TAG}` = '{kind}'"
        where += " and attributes.status = 'RUNNING'" if running else ""
        order = "DESC" if newest_only else "ASC"
        return all_runs(self.client, experiments, where, [f"attributes.start_time {order}"], 1 if newest_only else None)

    def open_parent(
        self,
        experiment: str,
        experiment_id: str,
        sweep_id: str,
        run_name: str,
        kind: str = "sweep",
        fresh: bool = False,
    ) -> tuple[str, bool]:
        """(The parent run of ``sweep_id`` to record into, whether another live process runs it.)

        A parent a live process is running is joined; else the newest is resumed; else (or with ``fresh``)
        a new one is claimed, so two processes starting the same sweep at once share one parent.
        """
        if not fresh:
            live = self.live_parents(experiment, sweep_id, kind)
            if live:
                return live[0].info.run_id, True
            newest = self.find_parent(experiment, sweep_id, kind)
            if newest is not None:  # a live process may have created it since the look above: then join it
                child = as_child(self.client.get_run(newest))
                return newest, child.live and not child.owned_here
        tags = {KIND_TAG: kind, SWEEP_TAG: sweep_id}
        if fresh:
            return self.start_run(experiment_id, run_name, tags), False

        def rivals(mine: str | None) -> list[Child]:
            return [as_child(run) for run in self.live_parents(experiment, sweep_id, kind) if run.info.run_id != mine]

        mine, _ = claim(lambda: self.start_run(experiment_id, run_name, tags), rivals, self.withdraw)
        if mine is not None:
            return mine, False
        live = self.live_parents(experiment, sweep_id, kind)
        if not live:
            raise UserError(f"{kind} {sweep_id}: could not start or join its parent run; run the command again")
        return live[0].info.run_id, True

    def withdraw(self, run_id: str) -> None:
        """How a claim takes back a run it created: ended KILLED, then deleted, so that no run is left RUNNING,
        deleted or not."""
        self.client.set_terminated(run_id, "KILLED")
        self.client.delete_run(run_id)

    def start_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        """A new RUNNING run owned by this process."""
        tags = {"mlflow.source.name": "lit-d2l", **tags, **owner_tags()}
        return self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def claim_pair(
        self, parent_id: str, experiment_id: str, run_name: str, tags: dict[str, str]
    ) -> tuple[str | None, str]:
        """Claim one arm × seed (``tags`` hold ``arm`` and ``seed``): (the new child run id, "") when this
        process holds it, else (None, why not: FINISHED or running elsewhere)."""
        return claim(
            lambda: self.start_run(experiment_id, run_name, {**tags, PARENT_TAG: parent_id}),
            lambda mine: holders(self.pair_runs(parent_id, experiment_id, _pair(tags)), _pair(tags), mine),
            self.withdraw,
        )

    def fit_claimed(
        self, parent_id: str, experiment_id: str, run_name: str, tags: dict[str, str], fit: Callable[[str], Result]
    ) -> tuple[Result | None, str]:
        """Claim one pair (:meth:`claim_pair`), then ``fit(run_id)`` in its run: (the fit's result, "") or (None, why
        the pair is taken). A stop signal while claiming is acted on once the claim has settled; a run left RUNNING
        by an exception (e.g. a stop before its fit began) ends KILLED on a stop, else FAILED."""
        with interrupts.deferred():
            run_id, taken = self.claim_pair(parent_id, experiment_id, run_name, tags)
        try:
            interrupts.raise_if_requested()
            return (None, taken) if run_id is None else (fit(run_id), "")
        except BaseException as exc:
            if run_id is not None:
                from lit_d2l.tracking.logger import run_status_for  # it loads torch: only on this path

                self.end_if_running(run_id, run_status_for(exc))
            raise

    def claim_pairs(
        self, parent_id: str, experiment_id: str, requests: list[tuple[str, dict[str, str]]]
    ) -> list[tuple[str | None, str]]:
        """Claim many pairs (``(run_name, tags)`` each) at once, as :meth:`claim_pair` claims one: every pair is
        read, the free ones created, then every created one read again; a pair that turns out contended is claimed
        again on its own."""
        results: list[tuple[str | None, str]] = [(None, "")] * len(requests)
        created: dict[int, str] = {}
        try:
            for index, (name, tags) in enumerate(requests):
                held = _held(holders(self.pair_runs(parent_id, experiment_id, _pair(tags)), _pair(tags), None))
                if held:
                    results[index] = (None, held)
                else:
                    created[index] = self.start_run(experiment_id, name, {**tags, PARENT_TAG: parent_id})
            after = {i: self.pair_runs(parent_id, experiment_id, _pair(requests[i][1])) for i in created}
        except BaseException:  # stopped (Ctrl-C) before the claims settled: hold nothing
            for run_id in created.values():
                self.withdraw(run_id)
            raise
        for index, run_id in created.items():
            name, tags = requests[index]
            if holders(after[index], _pair(tags), run_id):  # a rival claimed it meanwhile: the careful way, alone
                self.withdraw(run_id)
                results[index] = self.claim_pair(parent_id, experiment_id, name, tags)
            else:
                results[index] = (run_id, "")
        return results

    def children_of(self, parent_id: str, experiment_id: str, also: str = "") -> list[Child]:
        """The arm × seed runs of a sweep (not the run that tested its selected arm); ``also``: a further filter."""
        return [c for c in self._nested(parent_id, experiment_id, also) if c.tags.get(KIND_TAG) != TEST_KIND]

    def pair_runs(self, parent_id: str, experiment_id: str, pair: tuple[str, int]) -> list[Child]:
        """The runs of one arm × seed of a sweep (callers pick the pair out: an arm whose name a filter cannot quote
        reads every child): one search for the pair's tags reads a few runs, not the sweep's every child with its
        params and metrics (the read a claim makes grew with the sweep)."""
        arm, seed = pair
        if "'" in arm or "\\" in arm:  # not written as a filter's quoted value: read them all
            return self.children_of(parent_id, experiment_id)
        return self.children_of(parent_id, experiment_id, f"tags.arm = '{arm}' AND tags.seed = '{seed}'")

    def selection_tests(self, parent_id: str, experiment_id: str) -> list[Child]:
        """The runs that tested the sweep's selected arm (at most one FINISHED)."""
        return [c for c in self._nested(parent_id, experiment_id) if c.tags.get(KIND_TAG) == TEST_KIND]

    def claim_selection_test(
        self, parent_id: str, experiment_id: str, run_name: str, tags: dict[str, str]
    ) -> tuple[str | None, str]:
        """Claim the sweep's one test: (the new run id, "") or (None, why not: done, or running elsewhere)."""

        tags = {**tags, KIND_TAG: TEST_KIND, PARENT_TAG: parent_id}
        return claim(
            lambda: self.start_run(experiment_id, run_name, tags),
            lambda mine: holders(self.selection_tests(parent_id, experiment_id), None, mine),
            self.withdraw,
        )

    def record(self, run_id: str, metrics: dict[str, float], tags: dict[str, str], text: tuple[str, str]) -> None:
        """Log metrics (at step 0), tags and one text artifact ``(text, file name)`` on a run."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
        self.client.log_text(run_id, *text)

    def _nested(self, parent_id: str, experiment_id: str, also: str = "") -> list[Child]:
        runs = all_runs(
            self.client, [experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'" + (f" AND {also}" if also else "")
        )
        return [as_child(run) for run in runs]

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Params of a run, in one write."""
        if params:
            self.client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def download(self, run_id: str, path: str) -> Path:
        return Path(self.client.download_artifacts(run_id, path, tempfile.mkdtemp()))


def holders(runs: list[Child], pair: tuple[str, int] | None, mine: str | None) -> list[Child]:
    """The runs other than ``mine`` that hold ``pair`` (an arm x seed; None: any), as FINISHED or live."""
    return [
        c
        for c in runs
        if (pair is None or (c.arm, c.seed) == pair) and c.run_id != mine and (c.live or c.status == "FINISHED")
    ]


def _pair(tags: dict[str, str]) -> tuple[str, int]:
    return tags["arm"], int(tags["seed"])


def as_child(run: Run) -> Child:
    return Child(
        run_id=run.info.run_id,
        arm=run.data.tags.get("arm", ""),
        seed=int(run.data.tags.get("seed", 0)),
        status=run.info.status,
        outcome=run.data.tags.get("outcome", "finished" if run.info.status == "FINISHED" else "failed"),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        start_time=run.info.start_time or 0,
        params=dict(run.data.params),
    )


def claim(
    create: Callable[[], str],
    rivals: Callable[[str | None], list[Child]],
    delete: Callable[[str], None],
    attempts: int = 6,
) -> tuple[str | None, str]:
    """Create a run that holds something (a pair) unless a rival holds it; see the module docstring.

    ``rivals(mine)`` lists the other runs holding it (FINISHED, or RUNNING in a live process); ``delete``
    withdraws a run created here (:meth:`SweepStore.withdraw`). Returns (the run created, "") or (None, why not).
    """
    for attempt in range(attempts):
        if held := _held(rivals(None)):
            return None, held
        mine = create()
        try:
            contended = bool(rivals(mine))
        except BaseException:  # stopped (Ctrl-C, a cancelled task) before the claim settled: hold nothing
            delete(mine)
            raise
        if not contended:
            return mine, ""
        delete(mine)  # a rival claimed at the same time: back off, then look again
        time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    return None, _held(rivals(None)) or f"still contended after {attempts} attempts"


def _held(rivals: list[Child]) -> str:
    finished = [c for c in rivals if c.status == "FINISHED"]
    if finished:
        return f"already FINISHED in run {finished[0].run_id}"
    return f"running in run {rivals[0].run_id} ({rivals[0].owner})" if rivals else ""


def _newest(ids: list[str], most: int = 5) -> str:
    """``: a, b, c`` or `` (newest 5 of 9): a, ...``."""
    count = f" (newest {most} of {len(ids)})" if len(ids) > most else ""
    return f"{count}: {', '.join(ids[:most])}"
