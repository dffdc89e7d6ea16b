"""Real processes killed for real: runs never stay RUNNING, sweeps run every arm x seed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.liveness import STALE_TAG
from lit_d2l.tracking.sweeps import KIND_TAG, SWEEP_TAG
from tests.conftest import LINEAR_CONFIG
from tests.sweeps.test_sweep import children_by_pair, spec_file

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def lit_d2l(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 120, process=None) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.communicate()}")
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def running_runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")


def training(client: MlflowClient, experiment: str) -> list:
    """The experiment's RUNNING runs, once the first has stored training losses."""
    runs = running_runs(client, experiment)
    return runs if runs and client.get_metric_history(runs[0].info.run_id, "train/loss") else []


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"  # a zombie: dead, waiting to be reaped


def fit_args(tracking_uri: str, experiment: str, epochs: int = 2000) -> list[str]:
    return [
        "fit",
        "--config",
        str(LINEAR_CONFIG),
        "--tracking.uri",
        tracking_uri,
        "--tracking.experiment",
        experiment,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
    ]


def test_a_sigkilled_fit_is_marked_killed_by_the_next_command(tracking_uri, client, experiment):
    fit = lit_d2l(*fit_args(tracking_uri, experiment))
    (run,) = wait_for(lambda: running_runs(client, experiment), "the fit's run", process=fit)
    fit.send_signal(signal.SIGKILL)
    fit.communicate(timeout=30)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nobody could close it

    listing = lit_d2l("runs", "--stale", "--tracking-uri", tracking_uri)
    out, err = listing.communicate(timeout=120)
    assert listing.returncode == 0, err
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED"
    assert f"pid {fit.pid}" in closed.data.tags[STALE_TAG] and "is gone" in closed.data.tags[STALE_TAG]
    assert run.info.run_id in out


def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_same_run(tracking_uri, client, experiment):
    # The signal lands wherever the fit is (a step, a validation, an epoch's end): each resumes whole.
    fit = lit_d2l(*fit_args(tracking_uri, experiment, epochs=300))
    (run,) = wait_for(lambda: training(client, experiment), "training steps stored", process=fit)
    fit.send_signal(signal.SIGTERM)
    _, err = fit.communicate(timeout=60)
    assert fit.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("lit-d2l: interrupted by SIGTERM at step ")
    assert f"lit-d2l fit --resume {run.info.run_id}" in err and "Traceback" not in err
    assert client.get_run(run.info.run_id).info.status == "KILLED"

    resumed = lit_d2l("fit", "--resume", run.info.run_id, "--tracking.uri", tracking_uri, "--trainer.max_epochs", "301")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_epoch")]
    assert len(steps) == len(set(steps)) == 301


def test_two_sweeps_of_one_spec_at_once_run_every_pair_exactly_once(tmp_path, tracking_uri, client, experiment):
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 1.0, 3.0]}\nseeds: [0, 1]\n")
    sweeps = [lit_d2l("ablate", str(path), "--tracking-uri", tracking_uri, "--no-report") for _ in range(2)]
    for sweep in sweeps:
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, (out, err)
        assert "Traceback" not in err

    spec = load_spec(path)
    exp = client.get_experiment_by_name(experiment)
    parents = client.search_runs(
        [exp.experiment_id], f"tags.`{SWEEP_TAG}` = '{spec.sweep_id}' and tags.`{KIND_TAG}` = 'sweep'"
    )
    assert [p.info.status for p in parents] == ["FINISHED"]
    pairs = children_by_pair(tracking_uri, parents[0].info.run_id)
    assert set(pairs) == {(arm.key, seed) for arm, seed in spec.pairs()}
    assert all(statuses == ["FINISHED"] for statuses in pairs.values()), pairs


def test_sigkill_of_a_sweep_takes_its_workers_along_and_resume_runs_each_pair_once(
    tmp_path, tracking_uri, client, experiment
):
    path = spec_file(
        tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 600}\n"
    )
    sweep = lit_d2l("ablate", str(path), "--tracking-uri", tracking_uri, "--workers", "2", "--no-report")
    wait_for(lambda: len(running_runs(client, experiment)) >= 3, "both workers training", process=sweep)  # + parent
    workers = children_of(sweep.pid)
    assert len(workers) >= 2
    sweep.send_signal(signal.SIGKILL)
    sweep.communicate(timeout=30)
    wait_for(lambda: all(gone(pid) for pid in workers), "every worker gone after the sweep's SIGKILL", timeout_s=30)

    spec = load_spec(path)
    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None)
    pairs = children_by_pair(tracking_uri, result.parent_run_id)
    assert set(pairs) == {(arm.key, seed) for arm, seed in spec.pairs()}
    for pair, statuses in pairs.items():
        assert statuses.count("FINISHED") == 1 and "RUNNING" not in statuses, (pair, statuses)
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_a_worker_killed_alone_fails_only_its_own_arm(tmp_path, tracking_uri, client, experiment):
    path = spec_file(
        tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 300}\n"
    )
    # Unpacked, so that each worker holds one pair (a packed worker holds, and fails, its whole pack).
    sweep = lit_d2l(
        "ablate", str(path), "--tracking-uri", tracking_uri, "--workers", "2", "--no-report", "--pack", "off"
    )
    wait_for(lambda: len(running_runs(client, experiment)) >= 3, "both workers training", process=sweep)
    workers = [
        pid for pid in children_of(sweep.pid) if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(workers[0], signal.SIGKILL)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 1 and "Traceback" not in err, err
    assert "failed its worker process was killed by SIGKILL" in out

    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'")
    pairs = children_by_pair(tracking_uri, parent.info.run_id)
    statuses = sorted(s for each in pairs.values() for s in each)
    assert statuses == ["FINISHED", "FINISHED", "FINISHED", "KILLED"], pairs
    assert parent.info.status == "FAILED"  # not every pair has a FINISHED run; a rerun completes it
