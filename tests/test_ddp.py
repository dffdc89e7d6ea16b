"""DDP parity: two real CPU processes (gloo) train exactly what one process does with the same global batch.

Each case fits one model family for 2 epochs in one process (in this process) and under DDP on two
processes (a ``lit-d2l`` subprocess), then compares the final parameters (from the checkpoints) and
the epoch metrics (from MLflow) to 1e-5. The validation split has an odd size, so the ranks' shards
differ by one example and every example must still count exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
from lit_d2l.fit.resume import latest_checkpoint
from lit_d2l.fit.run import run_configured
from tests.conftest import LINEAR_CONFIG, REPO, only_run

CLASSIFICATION = REPO / "experiments" / "init_classification.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--log_graph", "false"]
EPOCH_METRICS = ("train/loss_epoch", "val/loss", "val/acc")
TOLERANCE = 1e-5

# 200 training examples (even: no padding), 101 validation examples (odd: unequal evaluation shards),
# a global batch of 32 whose last step has 8 examples (4 per rank).
SIZES = ["--data.num_train", "200", "--data.num_val", "101", "--data.batch_size", "32", "--trainer.max_epochs", "2"]
LINEAR = ["--config", str(LINEAR_CONFIG), "--test_after_fit", "false", *SIZES]
CLASSIFIER = ["--config", str(CLASSIFICATION), "--data.num_inputs", "8", "--data.num_classes", "4", *SIZES]

# Each family under both strategies: ddp (the command rerun in every process) and ddp_spawn (workers forked
# from this process's model).
CASES = {
    "linear-scratch-ddp": (LINEAR, "ddp"),
    "linear-concise-ddp_spawn": ([*LINEAR, "--model", "lit_d2l.models.LinearRegression"], "ddp_spawn"),
    "softmax-scratch-ddp": ([*CLASSIFIER, "--model", "lit_d2l.models.SoftmaxRegressionScratch"], "ddp"),
    "softmax-concise-ddp_spawn": ([*CLASSIFIER, "--model", "SoftmaxRegression"], "ddp_spawn"),
    "mlp-ddp": ([*CLASSIFIER, "--model.hidden_sizes", "[16]"], "ddp"),
    "mlp-scratch-ddp_spawn": ([*CLASSIFIER, "--model", "MLPScratch", "--model.num_hiddens", "16"], "ddp_spawn"),
}


def lit_d2l(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m lit_d2l ARGS`` in a fresh process, as a user (or a launcher) starts it."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "lit_d2l", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def two_processes(strategy: str) -> list[str]:
    return ["--trainer.strategy", strategy, "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def final_parameters(run) -> dict[str, torch.Tensor]:
    checkpoint = latest_checkpoint(run.data.tags.get(CHECKPOINT_DIR_TAG))
    assert checkpoint is not None, "the fit saved no checkpoint"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {name: value for name, value in state.items() if value.is_floating_point() and value.ndim > 0}


def epoch_metrics(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Each epoch metric's (step, value) pairs in step order (MLflow returns a history in timestamp order)."""
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in EPOCH_METRICS}


def assert_same_fit(client: MlflowClient, one, ddp) -> None:
    """Same parameters and the same epoch metrics, epoch by epoch, to 1e-5."""
    expected, got = final_parameters(one), final_parameters(ddp)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=TOLERANCE, msg=name)
    expected, got = epoch_metrics(client, one.info.run_id), epoch_metrics(client, ddp.info.run_id)
    for key in EPOCH_METRICS:
        assert [step for step, _ in got[key]] == [step for step, _ in expected[key]], key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in expected[key]], abs=TOLERANCE), key


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_ddp_on_two_processes_fits_what_one_process_fits(case, tmp_path, tracking_uri, client, experiment) -> None:
    args, strategy = CASES[case]
    where = ["--tracking.uri", tracking_uri]
    one = run_configured("fit", [*args, *QUIET, *where, "--tracking.experiment", f"{experiment}-one"])
    assert one is not None and one.status == "FINISHED"
    done = lit_d2l(
        "fit", *args, *QUIET, *where, "--tracking.experiment", experiment, *two_processes(strategy), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stdout.count("MLflow run") == 1, "only rank 0 reports"
    ddp = only_run(client, experiment)  # exactly one run per DDP fit
    assert ddp.info.status == "FINISHED"
    assert_same_fit(client, only_run(client, f"{experiment}-one"), ddp)
    if case == "linear-scratch-ddp":  # per-step train/loss: rank 0's, every log_every_n_steps = 2 global steps
        steps = 2 * -(-200 // 32)
        assert len(client.get_metric_history(ddp.info.run_id, "train/loss")) == steps // 2


@pytest.mark.slow
def test_cross_validation_under_ddp_makes_one_parent_and_a_ddp_fit_per_fold(tmp_path, tracking_uri, client, experiment):
    # 300 pooled examples: both folds train on 150, which 2 processes share evenly (no padding)
    args = [*LINEAR, "--data.num_val", "100", "--trainer.max_epochs", "1", *QUIET, "--tracking.uri", tracking_uri]
    ddp_args = [*args, "--tracking.experiment", experiment, *two_processes("ddp")]
    done = lit_d2l("cv", "--folds", "2", *ddp_args, cwd=tmp_path)
    assert "not a multiple" not in done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("MLflow parent run") == 1, "only rank 0 prints"
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] * 3, "one parent and two folds, nothing else"
    parents = [r for r in runs if "fold" not in r.data.tags]
    assert len(parents) == 1
    folds = sorted((r for r in runs if "fold" in r.data.tags), key=lambda r: r.data.tags["fold"])
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in folds)
    # The reference is a one-process `lit-d2l cv` as a user starts it (a fresh process).
    done = lit_d2l("cv", "--folds", "2", *args, "--tracking.experiment", f"{experiment}-one", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one = client.search_runs([client.get_experiment_by_name(f"{experiment}-one").experiment_id])
    reference = sorted((r for r in one if "fold" in r.data.tags), key=lambda r: r.data.tags["fold"])
    for fold, expected in zip(folds, reference, strict=True):
        for key in ("val/loss", "train/loss_epoch"):
            assert fold.data.metrics[key] == pytest.approx(expected.data.metrics[key], abs=TOLERANCE), key


@pytest.mark.slow
def test_a_global_batch_the_processes_do_not_divide_is_refused_in_one_line(tmp_path, tracking_uri, experiment):
    args = [*LINEAR, *QUIET, "--data.batch_size", "33", "--tracking.uri", tracking_uri]
    done = lit_d2l("fit", *args, "--tracking.experiment", experiment, *two_processes("ddp"), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lit-d2l: error:")]
    assert errors == [
        "lit-d2l: error: data.batch_size 33 is the global batch, shared by 2 processes "
        "(trainer.devices x trainer.num_nodes): make it a multiple of 2"
    ]
    assert MlflowClient(tracking_uri).get_experiment_by_name(experiment) is None, "nothing recorded"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_a_ddp_fits_whole_process_group_stops_every_rank_once(
    signum, tmp_path, tracking_uri, client, experiment
) -> None:
    """Ctrl-C in a terminal (or a scheduler's preemption) signals every process of the group, every rank at once: the
    ranks stop together at a step boundary (no collective inside a signal handler, where they would wait on each
    other for good), with one line from rank 0, the run KILLED and resumable."""
    long = ["--data.num_train", "64000", "--data.num_val", "2000", "--trainer.max_epochs", "10"]  # over SIZES'
    args = [*LINEAR, *long, *QUIET, *two_processes("ddp")]
    args += ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    fit = subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", "fit", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and fit.poll() is None:  # training, with some steps stored
        runs = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name == experiment])
        if runs and len(client.get_metric_history(runs[0].info.run_id, "train/loss")) > 100:
            break
        time.sleep(0.5)
    os.killpg(fit.pid, signum)  # every rank: Lightning's launcher started the other in this group
    try:
        _, err = fit.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(fit.pid, signal.SIGKILL)
        pytest.fail("the ranks did not stop within 90 s of the signal (a hang)")
    lines = [line for line in err.splitlines() if line.startswith("lit-d2l: ")]
    assert fit.returncode == 128 + signum and len(lines) == 1, err[-2000:]
    run_id = only_run(client, experiment).info.run_id
    assert client.get_run(run_id).info.status == "KILLED" and f"lit-d2l fit --resume {run_id}" in lines[0]
