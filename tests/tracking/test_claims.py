"""A claim that backs off takes its run back whole: ended KILLED, then deleted, never a deleted RUNNING run."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from lit_d2l.tracking.liveness import OWNER_TAG, Owner, _process_start
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG, SWEEP_TAG, SweepStore

PAIR = {"arm": "model.l2=1.0", "seed": "0"}


@pytest.fixture
def contended(tracking_uri: str, client: MlflowClient, experiment: str) -> tuple[SweepStore, str, str, list[str]]:
    """A store whose first claim of PAIR meets a rival that claims it at the same moment (a run of its own,
    made just after ours). Returns (store, experiment id, parent run id, [the rival's run id])."""
    exp = client.create_experiment(experiment)
    parent = client.create_run(exp).info.run_id
    store = SweepStore(tracking_uri)
    start_run, rival = store.start_run, []

    def start_with_a_rival(experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        mine = start_run(experiment_id, run_name, tags)
        if not rival:
            rival.append(start_run(experiment_id, "rival", {**PAIR, PARENT_TAG: parent}))
        return mine

    store.start_run = start_with_a_rival  # type: ignore[method-assign]
    return store, exp, parent, rival


def _runs(client: MlflowClient, exp: str) -> dict[str, tuple[str, str]]:
    """Every run of the experiment, deleted ones too: {run id: (status, lifecycle stage)}."""
    runs = client.search_runs([exp], run_view_type=ViewType.ALL)
    return {run.info.run_id: (run.info.status, run.info.lifecycle_stage) for run in runs}


def test_a_claim_that_backs_off_leaves_its_run_killed_not_running(contended, client):
    store, exp, parent, rival = contended
    run_id, taken = store.claim_pair(parent, exp, "mine", dict(PAIR))
    assert run_id is None and rival[0] in taken
    runs = _runs(client, exp)
    withdrawn = {k: v for k, v in runs.items() if k not in (parent, *rival)}
    assert withdrawn and set(withdrawn.values()) == {("KILLED", "deleted")}, runs


def test_a_bulk_claim_that_backs_off_leaves_its_run_killed_not_running(contended, client):
    store, exp, parent, rival = contended
    other = {"arm": "model.l2=3.0", "seed": "0"}
    (first, taken), (second, _) = store.claim_pairs(parent, exp, [("mine", dict(PAIR)), ("other", other)])
    assert first is None and rival[0] in taken and second is not None
    runs = _runs(client, exp)
    withdrawn = {k: v for k, v in runs.items() if k not in (parent, second, *rival)}
    assert withdrawn and set(withdrawn.values()) == {("KILLED", "deleted")}, runs
    assert runs[second] == ("RUNNING", "active")


def test_a_parent_created_by_a_live_process_during_the_lookup_is_joined_not_resumed(tracking_uri, client, experiment):
    """Two sweeps of one spec at once: the second's look for live parents came just before the first created
    one, so it found that parent as the newest. Resuming it would describe the sweep a second time, at the
    same moment as its owner (an IntegrityError of MLflow's params table); it must join it instead."""
    exp = client.create_experiment(experiment)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = Owner(socket.gethostname(), other.pid, _process_start(other.pid) or "?")
        tags = {KIND_TAG: "sweep", SWEEP_TAG: "s1", OWNER_TAG: str(owner)}
        theirs = client.create_run(exp, tags=tags).info.run_id
        store = SweepStore(tracking_uri)
        store.live_parents = lambda *args, **kwargs: []  # type: ignore[method-assign]  # looked before it existed
        assert store.open_parent(experiment, exp, "s1", "s1") == (theirs, True)
    finally:
        other.kill()
        other.wait()
    assert SweepStore(tracking_uri).open_parent(experiment, exp, "s1", "s1") == (theirs, False)  # its owner gone


ARM_NAMES = [
    "model.l2=1.0",
    "model.l2=1.0,data.noise=0.1",  # a prefix of another arm
    "model.activation=relu -- x",  # SQL's comment marker
    'data.name="a b"',
    "model.lr=50%_",  # LIKE's wildcards
    "λ=3",
    "data.name=it's",  # not writable as a filter's quoted value: every child is read
    "data.path=C:\\x",
]


def test_a_pair_is_read_alone_and_exactly_whatever_its_arm_name_holds(tracking_uri, client, experiment):
    exp = client.create_experiment(experiment)
    parent, other_parent = (client.create_run(exp).info.run_id for _ in range(2))
    store = SweepStore(tracking_uri)
    runs = {}
    for arm in ARM_NAMES:
        for seed in (0, 1, 10):
            runs[arm, seed] = store.start_run(exp, "run", {"arm": arm, "seed": str(seed), PARENT_TAG: parent})
    store.start_run(exp, "elsewhere", {"arm": ARM_NAMES[0], "seed": "0", PARENT_TAG: other_parent})
    store.start_run(exp, "its test", {"arm": ARM_NAMES[0], "seed": "0", PARENT_TAG: parent, KIND_TAG: "selection-test"})
    for (arm, seed), run_id in runs.items():
        found = store.pair_runs(parent, exp, (arm, seed))
        mine = [c.run_id for c in found if (c.arm, c.seed) == (arm, seed)]
        assert mine == [run_id], (arm, seed)
        assert all(c.tags[PARENT_TAG] == parent and c.tags.get(KIND_TAG) is None for c in found)
        if "'" not in arm and "\\" not in arm:  # read alone, not every child of the sweep
            assert len(found) == 1, (arm, seed, [(c.arm, c.seed) for c in found])
