"""Run owners, stale runs and claims, against a real SQLite store."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.tracking.liveness import (
    HEARTBEAT_TAG,
    OWNER_TAG,
    STALE_TAG,
    Heartbeat,
    Owner,
    close_stale_runs,
    owner_gone,
    this_process,
)
from lit_d2l.tracking.sweeps import SweepStore


def test_the_current_process_is_alive_and_a_finished_one_is_gone():
    me = this_process()
    assert Owner.parse(str(me)) == me
    assert owner_gone({OWNER_TAG: str(me)}, 0) is None
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Owner(me.host, int(done.stdout), me.started)
    assert "is gone" in owner_gone({OWNER_TAG: str(dead)}, 0)


def test_a_reused_pid_is_not_taken_for_the_owner():
    me = this_process()
    if me.started == "?":
        pytest.skip("no /proc: process start times unknown")
    impostor = Owner(me.host, me.pid, str(int(me.started) + 1))
    assert "another process" in owner_gone({OWNER_TAG: str(impostor)}, 0)


def test_a_run_on_another_host_is_alive_while_its_heartbeat_is_recent(monkeypatch):
    remote = str(Owner("some-other-node", 123, "456"))
    now = time.time()
    monkeypatch.setenv("LIT_D2L_STALE_AFTER_S", "60")
    assert owner_gone({OWNER_TAG: remote, HEARTBEAT_TAG: str(int(now - 30))}, 0, now=now) is None
    assert "no heartbeat" in owner_gone({OWNER_TAG: remote, HEARTBEAT_TAG: str(int(now - 90))}, 0, now=now)
    assert owner_gone({}, 0) is None, "a run lit-d2l did not start is never closed"


def test_only_runs_whose_process_is_gone_are_closed(client: MlflowClient, experiment):
    exp = client.create_experiment(experiment)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = str(Owner(socket.gethostname(), int(done.stdout), "1"))
    stale = client.create_run(exp, tags={OWNER_TAG: dead}).info.run_id
    alive = client.create_run(exp, tags={OWNER_TAG: str(this_process())}).info.run_id
    foreign = client.create_run(exp).info.run_id  # no owner: not ours to judge
    closed = close_stale_runs(client, [exp])
    assert [run.info.run_id for run, _ in closed] == [stale]
    assert client.get_run(stale).info.status == "KILLED" and "is gone" in client.get_run(stale).data.tags[STALE_TAG]
    assert client.get_run(alive).info.status == client.get_run(foreign).info.status == "RUNNING"


def test_the_heartbeat_refreshes_its_tag(tracking_uri, client: MlflowClient, experiment):
    run_id = client.create_run(client.create_experiment(experiment), tags={HEARTBEAT_TAG: "0"}).info.run_id
    beat = Heartbeat(tracking_uri, run_id, every_s=0.1)
    try:
        deadline = time.monotonic() + 10
        while client.get_run(run_id).data.tags[HEARTBEAT_TAG] == "0":
            assert time.monotonic() < deadline, "no heartbeat written"
            time.sleep(0.05)
    finally:
        beat.stop()
    assert abs(int(client.get_run(run_id).data.tags[HEARTBEAT_TAG]) - time.time()) < 5


@pytest.mark.slow
def test_claimers_racing_for_one_pair_never_both_hold_it(tracking_uri, client: MlflowClient, experiment):
    exp = client.create_experiment(experiment)
    parent = client.create_run(exp).info.run_id
    store = SweepStore(tracking_uri)
    for seed in range(3):
        won: list[str] = []
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=_contend, args=(store, parent, exp, seed, barrier, won)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        holders = [c for c in store.children_of(parent, exp) if c.seed == seed]
        assert len(won) == 1 and [c.run_id for c in holders] == won, (won, holders)


def _contend(store: SweepStore, parent: str, exp: str, seed: int, barrier: threading.Barrier, won: list[str]) -> None:
    barrier.wait()
    run_id, _ = store.claim_pair(parent, exp, f"seed={seed}", {"arm": "model.l2=1.0", "seed": str(seed)})
    if run_id is not None:
        won.append(run_id)


def test_a_claim_stopped_before_it_settles_holds_nothing() -> None:
    from lit_d2l.tracking.sweeps import claim

    created, deleted = [], []

    def interrupted_read(mine: str | None) -> list:
        if mine is not None:  # the run exists, the read-back is cut short (Ctrl-C, a cancelled Ray task)
            raise KeyboardInterrupt
        return []

    with pytest.raises(KeyboardInterrupt):
        claim(lambda: created.append("run-1") or "run-1", interrupted_read, deleted.append)
    assert created == deleted == ["run-1"]
