"""The cluster recipes of experiments/cluster/, run on this machine.

torchrun.sh really runs (1 node, 2 CPU processes). slurm.sbatch runs under a faked SLURM environment
(1 node, 1 task, ``srun`` a shim that runs its command): its first start, a SIGTERM as SLURM sends it
after a requeue, and the requeued start that resumes the same MLflow run. Real multi-node runs, a
real SLURM and Lightning's SIGUSR1 requeue are not tested here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import LINEAR_CONFIG, REPO
from tests.test_cli import free_port
from tests.test_resilience import children_of

CLUSTER = REPO / "experiments" / "cluster"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--log_graph", "false"]
SMALL = ["--data.num_train", "200", "--data.num_val", "100", "--test_after_fit", "false"]


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["PYTHON"] = sys.executable
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    return env | extra


def run_recipe(recipe: str, args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bash experiments/cluster/RECIPE ARGS`` to its end, in ``tmp_path``."""
    return subprocess.run(
        ["bash", str(CLUSTER / recipe), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def runs(tmp_path: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.slow
def test_torchrun_recipe_trains_one_run_on_two_processes(tmp_path: Path) -> None:
    env = environment(tmp_path, NPROC_PER_NODE="2", RDZV_ENDPOINT=f"127.0.0.1:{free_port()}", ACCELERATOR="cpu")
    args = ["--config", str(LINEAR_CONFIG), *SMALL, *QUIET, "--trainer.max_epochs", "2"]
    done = run_recipe("torchrun.sh", args, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("MLflow run") == 1, "only rank 0 reports"
    assert "GLOBAL_RANK: 1" in done.stderr, "two processes trained"
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2"


def test_slurm_recipe_parses_and_refuses_to_run_outside_a_job(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(CLUSTER / "slurm.sbatch")]).returncode == 0
    text = (CLUSTER / "slurm.sbatch").read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text
    done = subprocess.run(["bash", str(CLUSTER / "slurm.sbatch")], env=environment(tmp_path), capture_output=True)
    assert done.returncode != 0 and b"submit this with sbatch" in done.stderr


def test_several_nodes_without_a_server_or_a_rendezvous_are_refused_in_one_line(tmp_path: Path) -> None:
    """A SQLite file is local to one node, and a rendezvous at 127.0.0.1 pairs nobody: refused at once."""
    env = {k: v for k, v in environment(tmp_path).items() if k not in ("MLFLOW_TRACKING_URI", "RDZV_ENDPOINT")}
    recipes = {
        "torchrun.sh": {"NNODES": "2", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"},  # no RDZV_ENDPOINT
        "slurm.sbatch": {"SLURM_JOB_ID": "7", "SLURM_NNODES": "2"},  # no MLFLOW_TRACKING_URI
    }
    for recipe, extra in recipes.items():
        done = subprocess.run(
            ["bash", str(CLUSTER / recipe)], env=env | extra, capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 2 and done.stdout == "", recipe
        (line,) = done.stderr.splitlines()
        assert line.startswith("lit-d2l: error: 2 nodes need") and "MLFLOW_TRACKING_URI=http://" in line, recipe
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "slurm-runs").exists()


@pytest.mark.slow
def test_slurm_recipe_resumes_its_run_after_a_requeue(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    for shim in ("srun", "scontrol"):
        (shims / shim).chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "lit-d2l",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    env = environment(tmp_path, **slurm, ACCELERATOR="cpu", PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    args = ["--config", str(LINEAR_CONFIG), *SMALL, *QUIET, "--trainer.max_epochs", "300"]
    first = subprocess.Popen(
        ["bash", str(CLUSTER / "slurm.sbatch"), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    assert "starts run slurm-4242" in first.stdout.readline()  # printed once the recipe's lookup made the store
    deadline = time.monotonic() + 120  # training (an epoch's losses stored; 300 epochs take ~20 s more) ...
    while not any("train/loss" in run.data.metrics for run in runs(tmp_path)):
        assert time.monotonic() < deadline and first.poll() is None, "no training losses stored"
        time.sleep(0.2)
    (task,) = children_of(first.pid)  # ... then the time limit's SIGUSR1, which SLURM sends to the job's tasks
    os.kill(task, signal.SIGUSR1)
    first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGUSR1
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"  # the script requeued its job
    (stopped,) = runs(tmp_path)
    assert stopped.info.status == "KILLED"
    assert stopped.info.run_name == "slurm-4242"
    env |= {"SLURM_RESTART_COUNT": "1"}
    again = run_recipe("slurm.sbatch", args, tmp_path, env)  # the requeued job: the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumes run {stopped.info.run_id}" in again.stdout
    assert (tmp_path / "slurm-runs" / "4242.run").read_text().strip() == stopped.info.run_id
    (resumed,) = runs(tmp_path)
    assert resumed.info.run_id == stopped.info.run_id
    assert resumed.info.status == "FINISHED"
