"""``--backend ray``: a sweep on a real two-node Ray cluster recording to a real MLflow server (no shared
files), a node killed mid-sweep, and the backend's bad input (fast)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.processes.guard import stop_process_group
from lit_d2l.sweeps.crossval import cross_validate
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.ray_backend import NODE_TAG, RAY_MISSING
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.liveness import STALE_TAG, Owner
from tests.conftest import LINEAR_CONFIG, REPO
from tests.sweeps.test_sweep import children_by_pair
from tests.test_cli import assert_one_error_line, free_port, run_main
from tests.tracking.test_server import mlflow_server

#: Ray 2.5x turns token authentication on for `ray start --head`; a cluster on 127.0.0.1 for a test needs none.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def spec_file(folder: Path, name: str, epochs: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nbase: {LINEAR_CONFIG}\ngrid: {{model.lr: [0.01, 0.03]}}\nseeds: [0, 1]\n"
        f"overrides: {{trainer.max_epochs: {epochs}, test_after_fit: false}}\n"
    )
    return path


# -- fast: bad input, and the local backend unchanged ------------------------------------------------


def test_ray_backend_without_ray_is_one_line(tmp_path, tracking_uri, client, experiment, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where Ray is not installed
    spec = load_spec(spec_file(tmp_path, experiment, 1))
    with pytest.raises(UserError, match=r"^Ray is not installed: pip install -e '\.\[ray\]'$"):
        run_sweep(spec, tracking_uri=tracking_uri, backend="ray")
    with pytest.raises(UserError, match="Ray is not installed"):
        cross_validate(["--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri], 2, backend="ray")
    assert client.get_experiment_by_name(experiment) is None  # refused before anything was recorded
    assert RAY_MISSING == "Ray is not installed: pip install -e '.[ray]'"


def test_bad_backend_options(tmp_path, tracking_uri, client, experiment, capsys) -> None:
    spec = spec_file(tmp_path, experiment, 1)
    with pytest.raises(UserError, match="--backend must be one of local, ray, got 'spark'"):
        run_sweep(load_spec(spec), tracking_uri=tracking_uri, backend="spark")
    ablate = ["ablate", str(spec), "--tracking-uri", tracking_uri]
    code, _, err = run_main([*ablate, "--address", "auto"], capsys)
    assert_one_error_line(code, err, "^lit-d2l: error: --address names a Ray cluster: give it with --backend ray$")
    code, _, err = run_main([*ablate, "--backend", "ray", "--workers", "2"], capsys)
    assert_one_error_line(code, err, "--workers is for --backend local; on Ray a sweep uses every CPU")
    code, _, err = run_main(["cv", "--config", str(LINEAR_CONFIG), "--address", "auto"], capsys)
    assert_one_error_line(code, err, "--address names a Ray cluster")
    assert client.get_experiment_by_name(experiment) is None


def test_an_address_nothing_answers_at_fails_at_once_in_one_line(tmp_path, tracking_uri, client, experiment, capsys):
    spec = spec_file(tmp_path, experiment, 1)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    code, _, err = run_main(
        ["ablate", str(spec), "--tracking-uri", tracking_uri, "--backend", "ray", "--address", address], capsys
    )
    assert_one_error_line(code, err, rf"^lit-d2l: error: cannot reach Ray at {address} \(.+\); start the cluster")
    code, _, err = run_main(["ablate", str(spec), "--backend", "ray", "--address", "head-node"], capsys)
    assert_one_error_line(code, err, "expected HOST:PORT")
    assert time.monotonic() - start < 30  # ray.init() alone retries for minutes
    assert client.get_experiment_by_name(experiment) is None  # refused before anything was recorded


@pytest.mark.slow
def test_the_cli_imports_ray_only_for_the_ray_backend() -> None:
    script = (
        "import sys; from lit_d2l.cli.main import run; import lit_d2l.sweeps.engine, lit_d2l.sweeps.crossval; "
        "run(['--help']); "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


# -- slow: a real cluster ---------------------------------------------------------------------------


@dataclass
class RayCluster:
    address: str
    head: subprocess.Popen
    node: subprocess.Popen  # the second node: its `ray start --block` leads its raylet's process group


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats", *args]
    command += ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 2**20)]
    command += ["--dashboard-agent-listen-port", str(free_port())]
    with open(log, "w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **RAY_ENV}
        )


def _workers_of(group: int) -> list[int]:
    """Ray worker processes (each a process group of its own) whose parent is in process group ``group``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if os.getpgid(parent) == group and os.getpgid(int(entry.name)) != group:
                    found.append(int(entry.name))
    return found


def _stop(node: subprocess.Popen) -> None:
    workers = _workers_of(node.pid)
    stop_process_group(node, grace_s=10.0)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    # Ray's socket paths must stay short: not under pytest's deep temporary folders.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    head = _ray_start(["--head", "--port", str(port), "--temp-dir", str(temp), "--include-dashboard", "false",
                       "--ray-client-server-port", str(free_port())], temp / "head.log")  # fmt: skip
    node = None
    try:
        _wait_for_nodes(f"127.0.0.1:{port}", 1, head, temp / "head.log")
        node = _ray_start(["--address", f"127.0.0.1:{port}"], temp / "node.log")
        _wait_for_nodes(f"127.0.0.1:{port}", 2, node, temp / "node.log")
        yield RayCluster(f"127.0.0.1:{port}", head, node)
    finally:
        for process in (node, head):
            if process is not None:
                _stop(process)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_nodes(address: str, count: int, process: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> None:
    command = [str(Path(sys.executable).parent / "ray"), "status", "--address", address]
    deadline = time.monotonic() + timeout_s
    while True:
        status = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **RAY_ENV})
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if status.returncode == 0 and active.count("node_") >= count:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"Ray node did not start: {log.read_text()[-2000:]}\n{status.stdout[-1000:]}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        yield uri


def _ablate(spec: Path, cluster: RayCluster, server: str) -> list[str]:
    return [sys.executable, "-m", "lit_d2l", "ablate", str(spec), "--backend", "ray", "--address", cluster.address,
            "--tracking-uri", server, "--pack", "off", "--no-report"]  # fmt: skip


def _running_child(
    client: MlflowClient, experiment: str, sweep: subprocess.Popen, pick: Callable[[Run], bool], log: Path | str
) -> Run:
    """The first RUNNING run of ``experiment`` that ``pick`` accepts, while ``sweep`` runs (at most 150 s)."""
    deadline = time.monotonic() + 150
    while True:
        assert sweep.poll() is None and time.monotonic() < deadline, log and Path(log).read_text()[-3000:]
        exp = client.get_experiment_by_name(experiment)
        running = [] if exp is None else client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
        for run in running:
            if pick(run):
                return run
        time.sleep(0.5)


def _parent_id(client: MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], "tags.`lit_d2l.kind` = 'sweep'")
    return parent.info.run_id


@pytest.mark.slow
def test_a_sweep_on_two_ray_nodes_records_each_pair_once_on_the_server(
    ray_cluster: RayCluster, server: str, tmp_path: Path, experiment: str
) -> None:
    spec = spec_file(tmp_path, experiment, 1)
    env = {**os.environ, **RAY_ENV}
    result = subprocess.run(_ablate(spec, ray_cluster, server), capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("arm ")][-1].startswith("arm 4/4 ")
    client = MlflowClient(server)
    parent_id = _parent_id(client, experiment)
    assert client.get_run(parent_id).info.status == "FINISHED"
    expected = {(f"model.lr={lr}", seed): ["FINISHED"] for lr in (0.01, 0.03) for seed in (0, 1)}
    assert children_by_pair(server, parent_id) == expected
    exp = client.get_experiment_by_name(experiment)
    assert exp.artifact_location.startswith("mlflow-artifacts:/")  # artifacts go up through the server
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    for child in children:
        into = tmp_path / "downloads" / child.info.run_id
        into.mkdir(parents=True)
        config = Path(client.download_artifacts(child.info.run_id, "config.yaml", str(into)))
        assert "model.lr" in child.data.params and config.read_text().startswith("# lightning")
        assert child.data.tags["device"] == "cpu" and child.data.tags[NODE_TAG]
    assert len({child.data.tags[NODE_TAG] for child in children}) == 2  # both nodes took units
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads", f"{experiment}.yaml"]  # no local store files


@pytest.mark.slow
def test_ctrl_c_cancels_the_ray_tasks_and_ends_the_runs_killed(
    ray_cluster: RayCluster, server: str, tmp_path: Path, experiment: str
) -> None:
    spec = spec_file(tmp_path, experiment, 400)
    env = {**os.environ, **RAY_ENV}
    sweep = subprocess.Popen(_ablate(spec, ray_cluster, server), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, env=env)  # fmt: skip
    client = MlflowClient(server)
    try:
        _running_child(client, experiment, sweep, lambda run: NODE_TAG in run.data.tags, "")
        sweep.send_signal(signal.SIGINT)
        _, err = sweep.communicate(timeout=90)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130
    rerun = shlex.join(_ablate(spec, ray_cluster, server)[3:])  # the same ablate command resumes the sweep
    lines = [line for line in err.splitlines() if line.startswith("lit-d2l")]
    assert lines == [f"lit-d2l: interrupted by SIGINT; continue it with: lit-d2l {rerun}"]
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    statuses = {run.data.tags.get("arm", "parent"): run.info.status for run in runs}
    assert statuses["parent"] == "KILLED" and "KILLED" in statuses.values() and "RUNNING" not in statuses.values()


@pytest.mark.slow
def test_a_node_killed_mid_sweep_costs_nothing(
    ray_cluster: RayCluster, server: str, tmp_path: Path, experiment: str
) -> None:
    spec = spec_file(tmp_path, experiment, 40)
    env = {**os.environ, **RAY_ENV}
    command = _ablate(spec, ray_cluster, server)
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        sweep = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    client = MlflowClient(server)

    def on_second_node(run: Run) -> bool:
        owner = Owner.parse(run.data.tags.get("lit_d2l.owner", ""))
        return owner is not None and owner.pid in _workers_of(ray_cluster.node.pid)

    try:
        run = _running_child(client, experiment, sweep, on_second_node, log)
        victim = (run.info.run_id, Owner.parse(run.data.tags["lit_d2l.owner"]).pid)
        workers = _workers_of(ray_cluster.node.pid)
        os.killpg(ray_cluster.node.pid, signal.SIGKILL)  # the node's raylet and agents, then its workers
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sweep.wait(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    # Ray ran the lost unit again on the head node, which re-claimed its pair: nothing was left for a re-run.
    assert sweep.returncode == 0, log.read_text()[-3000:]
    assert "4 arm runs in" in log.read_text() and "4 finished, 0 diverged, 0 failed, 0 skipped" in log.read_text()
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 arm runs in" in again.stdout and "4 done before" in again.stdout
    parent_id = _parent_id(client, experiment)
    pairs = children_by_pair(server, parent_id)
    assert {pair: statuses.count("FINISHED") for pair, statuses in pairs.items()} == {
        (f"model.lr={lr}", seed): 1 for lr in (0.01, 0.03) for seed in (0, 1)
    }
    killed = client.get_run(victim[0])
    assert killed.info.status == "KILLED" and f"pid {victim[1]}" in killed.data.tags[STALE_TAG]
    assert client.get_run(parent_id).info.status == "FINISHED"


@pytest.mark.slow
def test_cv_on_ray_fits_each_fold_on_the_cluster_as_it_would_here(
    ray_cluster: RayCluster, server: str, tmp_path: Path, experiment: str
) -> None:
    fit = ["--config", str(LINEAR_CONFIG), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    here = cross_validate([*fit, "--tracking.uri", server, "--tracking.experiment", f"{experiment}-here"], 2)
    command = [sys.executable, "-m", "lit_d2l", "cv", "--folds", "2", "--backend", "ray", "--address",
               ray_cluster.address, *fit, "--tracking.uri", server, "--tracking.experiment", experiment]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **RAY_ENV},
                            timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"view it with: open {server} in a browser" in result.stdout
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("lit_d2l.kind") == "cross-validation"]
    folds = sorted((run for run in runs if run is not parent), key=lambda run: int(run.data.tags["fold"]))
    assert parent.info.status == "FINISHED" and [run.info.status for run in folds] == ["FINISHED"] * 2
    for run in folds:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["device"] == "cpu" and run.data.tags[NODE_TAG]
    # the same folds as on one machine: the same validation losses, and the same summary
    assert [run.data.metrics["val/loss"] for run in folds] == pytest.approx([f.metrics["val/loss"] for f in here.folds])
    assert parent.data.metrics["val/loss_mean"] == pytest.approx(here.summary["val/loss_mean"])
