"""``fit --resume`` takes a stopped run over exclusively: of resumes started at once, exactly one goes on."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
from lit_d2l.errors import UserError
from lit_d2l.tracking.liveness import TAKEOVER_PREFIX, Owner
from lit_d2l.tracking.takeover import settle, take_over


def stopped_run(client: MlflowClient, experiment: str, checkpoints: Path) -> str:
    """A KILLED run with what ``fit --resume`` needs: a checkpoint file and a config.yaml artifact."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "epoch=0-step=1.ckpt").write_bytes(b"")
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(exp_id, tags={CHECKPOINT_DIR_TAG: str(checkpoints)}).info.run_id
    client.log_text(run_id, "seed_everything: 0\n", "config.yaml")
    client.set_terminated(run_id, "KILLED")
    return run_id


def claim_of(pid: int) -> str:
    return f"{Owner(socket.gethostname(), pid, '?')} {int(time.time())}"


def test_a_live_rivals_claim_refuses_and_a_gone_ones_is_ignored_then_cleared(
    tracking_uri, client, experiment, tmp_path
):
    run_id = stopped_run(client, experiment, tmp_path / "ckpt")
    rival = subprocess.Popen(["sleep", "60"])
    try:
        client.set_tag(run_id, TAKEOVER_PREFIX + "rival", claim_of(rival.pid))
        with pytest.raises(UserError, match=f"run {run_id} is being resumed by pid {rival.pid} on "):
            take_over(tracking_uri, run_id, lambda run: "")
        assert not [k for k in client.get_run(run_id).data.tags if k.startswith(TAKEOVER_PREFIX) and "rival" not in k]
    finally:
        rival.kill()
        rival.wait()
    # The rival is gone now: its claim no longer holds the run.
    take_over(tracking_uri, run_id, lambda run: "")
    tags = client.get_run(run_id).data.tags
    assert len([k for k in tags if k.startswith(TAKEOVER_PREFIX)]) == 2  # the gone rival's and this process's
    settle(client, run_id, tags)  # as the logger does once it owns the run
    assert not [k for k in client.get_run(run_id).data.tags if k.startswith(TAKEOVER_PREFIX)]


def test_a_refusal_of_the_run_itself_comes_first(tracking_uri, client, experiment, tmp_path):
    run_id = stopped_run(client, experiment, tmp_path / "ckpt")
    with pytest.raises(UserError, match="already FINISHED"):
        take_over(tracking_uri, run_id, lambda run: "already FINISHED")
    assert not [k for k in client.get_run(run_id).data.tags if k.startswith(TAKEOVER_PREFIX)]


def test_a_rival_that_takes_the_run_over_while_the_run_is_read_is_still_seen(
    tracking_uri, client, experiment, tmp_path, monkeypatch
):
    """MLflow reads a run's status, then its tags. A rival that makes the run RUNNING and deletes its own claim
    between the two shows in neither half of that read (seen under load: both resumes went on)."""
    run_id = stopped_run(client, experiment, tmp_path / "ckpt")
    reads = 0

    class ReadsInTwoStatements(MlflowClient):
        def get_run(self, run_id: str) -> Run:
            nonlocal reads
            reads += 1
            status = super().get_run(run_id)
            if reads == 2:  # the look after this process's claim: the rival wins in the middle of it
                client.update_run(run_id, status="RUNNING")
            return Run(status.info, super().get_run(run_id).data)

    monkeypatch.setattr("lit_d2l.tracking.takeover.MlflowClient", ReadsInTwoStatements)
    with pytest.raises(UserError, match="still running"):
        take_over(tracking_uri, run_id, lambda run: "still running" if run.info.status == "RUNNING" else "")
    assert not [k for k in client.get_run(run_id).data.tags if k.startswith(TAKEOVER_PREFIX)]  # withdrawn


@pytest.mark.slow
def test_resumes_started_at_the_same_instant_take_the_run_over_exactly_once(tracking_uri, client, experiment, tmp_path):
    rounds = 4
    run_ids = [stopped_run(client, experiment, tmp_path / f"ckpt{i}") for i in range(rounds)]
    context = multiprocessing.get_context("spawn")  # no store connection shared with this process
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_resume_at_once, args=(tracking_uri, experiment, run_ids, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=300) for _ in range(2 * rounds)]
    finally:
        for worker in workers:
            worker.join(timeout=60)
    for run_id in run_ids:
        mine = sorted((o for o in outcomes if o[0] == run_id), key=lambda o: o[1])
        assert [o[1] for o in mine] == ["refused", "resumed"], mine
        (_, _, loser_says), (_, _, winner) = mine
        assert f"run {run_id} is " in loser_says and f"pid {winner} on " in loser_says, loser_says
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"  # the winner's logger ended it
        assert not [k for k in run.data.tags if k.startswith(TAKEOVER_PREFIX)]


def _resume_at_once(uri: str, experiment: str, run_ids: list[str], barrier, results) -> None:
    """In a process of its own: for each run, ``fit --resume``'s takeover at the same instant as the other
    worker; the winner's logger then takes the run over, as a fit does, and ends it once both have reported."""
    from lit_d2l.fit.resume import resume_args
    from lit_d2l.tracking import TrackingLogger

    for run_id in run_ids:
        barrier.wait(timeout=300)
        try:
            resume_args(run_id, ["--tracking.uri", uri])
        except UserError as exc:
            results.put((run_id, "refused", str(exc)))
            barrier.wait(timeout=300)
            continue
        logger = TrackingLogger(experiment_name=experiment, tracking_uri=uri, run_id=run_id)
        _ = logger.run_id  # RUNNING, owned by this process
        results.put((run_id, "resumed", os.getpid()))
        barrier.wait(timeout=300)
        logger.end_run("KILLED")
