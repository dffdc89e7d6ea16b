"""`lit-d2l cv` stopped and run again: the same parent run goes on, FINISHED folds are not trained again."""

from __future__ import annotations

import shlex
import signal
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.fit import run as fit_run
from lit_d2l.processes.interrupts import Interrupted
from lit_d2l.tracking.liveness import owner_tags, this_process
from lit_d2l.tracking.sweeps import SWEEP_TAG
from tests.conftest import LINEAR_CONFIG, REPO
from tests.test_cli import QUIET, run_main
from tests.test_ddp import LINEAR, two_processes
from tests.test_ddp import QUIET as DDP_QUIET
from tests.test_ddp import lit_d2l as run_cli
from tests.test_resilience import ENV, wait_for
from tests.test_resume import SignalAtStep

PARENT_KIND = "cross-validation"


def cv_runs(client: MlflowClient, experiment: str) -> tuple[list, list]:
    """(The cv parent runs, the fold runs) of the experiment."""
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    parents = [run for run in runs if run.data.tags.get("lit_d2l.kind") == PARENT_KIND]
    return parents, [run for run in runs if "fold" in run.data.tags]


def finished_per_fold(folds: list) -> Counter[str]:
    return Counter(run.data.tags["fold"] for run in folds if run.info.status == "FINISHED")


#: Folds of a few dozen examples, one epoch: a fit in well under a second.
TINY = ["--data.num_train", "48", "--data.num_val", "48", "--trainer.max_epochs", "1", "--log_graph", "false"]


def test_a_cv_stopped_in_a_fold_names_itself_and_resumes_in_the_same_parent(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys, monkeypatch
) -> None:
    fitted: list[int] = []  # the folds fitted, in order
    execute = fit_run.execute

    def stop_fold_1_once(cli, command: str):
        fitted.append(cli.datamodule.fold)
        if fitted == [0, 1]:  # a stop signal in fold 1's fit, handled as execute handles it
            cli.logger.start()  # the fit had begun: its run exists
            try:
                raise Interrupted(signal.SIGHUP, step=3, checkpoint="interrupted-step=3.ckpt")
            except Interrupted as stop:
                cli.logger.end("KILLED")
                stop.run_id = cli.logger.version
                raise
        return execute(cli, command)

    monkeypatch.setattr(fit_run, "execute", stop_fold_1_once)  # every fold's fit
    argv = ["cv", "--folds", "2", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, *TINY]
    code, _, err = run_main(argv, capsys)
    assert code == 128 + signal.SIGHUP
    (line,) = [line for line in err.splitlines() if line.startswith("lit-d2l")]
    assert line.startswith("lit-d2l: interrupted by SIGHUP at step 3; MLflow run ") and "ckpt" not in line
    assert line.endswith(f"is KILLED; continue it with: lit-d2l {shlex.join(argv)}"), line
    (parent,), folds = cv_runs(client, experiment)
    assert parent.info.status == "KILLED" and "val/loss_mean" not in parent.data.metrics
    assert sorted((r.data.tags["fold"], r.info.status) for r in folds) == [("0", "FINISHED"), ("1", "KILLED")]

    code, out, _ = run_main(argv, capsys)  # the same command again
    assert code == 0
    assert fitted == [0, 1, 1], "fold 0 is not fitted again; the stopped fold 1 is"
    assert "resuming cross-validation cv-" in out and ": 1 of 2 folds done" in out
    start = f": 1 fold to train (1 done before); parent run {parent.info.run_id}. Ctrl-C stops; run it again to resume"
    assert start in out and out.index(start) < out.index("fold 1/1 (data.fold 1)"), "where it records, before it trains"
    assert "1 fold in " in out and "; 1 done before; MLflow parent run" in out and "over 2 folds" in out
    parents, folds = cv_runs(client, experiment)
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert finished_per_fold(folds) == {"0": 1, "1": 1}
    losses = [r.data.metrics["val/loss"] for r in folds if r.info.status == "FINISHED"]
    assert parent.data.metrics["val/loss_mean"] == pytest.approx(statistics.fmean(losses))
    note = parent.data.tags["mlflow.note.content"].splitlines()  # the answer atop the parent's page in MLflow
    mean, std = parent.data.metrics["val/loss_mean"], parent.data.metrics["val/loss_std"]
    assert note[0] == f"- **val/loss: {mean:.4g} ± {std:.2g} over 2 folds**" and f"val/loss: {mean:.4g}" in out
    fold_rows = sorted(line for line in note if line.startswith(("| 0 |", "| 1 |")))
    assert fold_rows == sorted(
        f"| {r.data.tags['fold']} | {r.data.metrics['val/loss']:.4g} | {r.info.run_id} |"
        for r in folds
        if r.info.status == "FINISHED"
    )

    code, out, _ = run_main(argv, capsys)  # once more: nothing left to fit, the same summary
    assert code == 0 and fitted == [0, 1, 1] and "2 of 2 folds done" in out
    assert "0 folds to train (2 done before)" in out and "Ctrl-C stops" not in out, "nothing to stop"
    assert client.get_run(parent.info.run_id).data.metrics == parent.data.metrics

    code, out, _ = run_main([*argv, "--fresh"], capsys)  # a new parent, every fold fitted again
    assert code == 0 and fitted == [0, 1, 1, 0, 1] and "resuming" not in out
    parents, folds = cv_runs(client, experiment)
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert finished_per_fold(folds) == {"0": 2, "1": 2}

    newest = max(parents, key=lambda p: p.info.start_time).info.run_id
    client.update_run(newest, status="RUNNING")  # as if a live process (this one) were running it
    for key, value in owner_tags().items():
        client.set_tag(newest, key, value)
    code, _, err = run_main(argv, capsys)
    assert code == 2 and fitted == [0, 1, 1, 0, 1]
    assert err.strip().splitlines() == [
        f"lit-d2l: error: cross-validation {parents[0].data.tags[SWEEP_TAG]} is running in {this_process()} "
        f"(MLflow run {newest}): wait for it to end, or start another with --fresh"
    ]
    client.set_terminated(newest, "FINISHED")


#: Folds in batches of 8 over 3 epochs (5 steps an epoch), every step logged.
STEPS = ["--data.num_train", "64", "--data.num_val", "16", "--data.batch_size", "8", "--trainer.max_epochs", "3"]
STEPS += ["--trainer.log_every_n_steps", "1", "--log_graph", "false"]


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_fold_stopped_mid_fit_goes_on_in_its_own_run_from_its_stops_checkpoint(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys, monkeypatch
) -> None:
    execute, signalled = fit_run.execute, []

    def signal_in_fold_1(cli, command: str):
        if cli.datamodule.fold == 1 and not signalled:  # a real SIGHUP at fold 1's step 6, once
            signalled.append(cli.datamodule.fold)
            cli.trainer.callbacks.append(SignalAtStep(6, signal.SIGHUP))
        return execute(cli, command)

    monkeypatch.setattr(fit_run, "execute", signal_in_fold_1)
    argv = ["cv", "--folds", "2", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, *STEPS]
    code, _, err = run_main(argv, capsys)
    assert code == 128 + signal.SIGHUP, err
    _, folds = cv_runs(client, experiment)
    (stopped,) = [r for r in folds if r.data.tags["fold"] == "1"]
    assert stopped.info.status == "KILLED"
    client.set_tag(stopped.info.run_id, "device", "cuda:3")  # as if it had trained on a GPU of a Ray node

    code, out, err = run_main(argv, capsys)  # the same command again: fold 1 goes on where it stopped
    assert code == 0, err
    assert "(1 done before, data.fold 1 goes on from interrupted-step=6.ckpt)" in out
    assert client.get_run(stopped.info.run_id).data.tags["device"] == "cpu", "where it trained last"
    _, folds = cv_runs(client, experiment)
    assert [(r.info.run_id, r.info.status) for r in folds if r.data.tags["fold"] == "1"] == [
        (stopped.info.run_id, "FINISHED")
    ], "in its own run, not a new one"

    code, _, _ = run_main([*argv, "--fresh"], capsys)  # the same fold never stopped
    assert code == 0
    _, folds = cv_runs(client, experiment)
    (whole,) = [r.info.run_id for r in folds if r.data.tags["fold"] == "1" and r.info.run_id != stopped.info.run_id]
    for key, steps in (("train/loss", 15), ("val/loss", 3)):  # 5 steps an epoch: every step once, as whole
        history, reference = _history(client, stopped.info.run_id, key), _history(client, whole, key)
        assert [step for step, _ in history] == [step for step, _ in reference] == sorted({s for s, _ in history})
        assert len(history) == steps, key
        assert [v for _, v in history] == pytest.approx([v for _, v in reference], abs=1e-6), key


@pytest.mark.slow
def test_sighup_of_cv_names_the_cv_command_and_running_it_again_finishes_the_same_parent(
    tmp_path, tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    # Long enough folds (a few seconds each on a busy machine) that fold 1 is still training when the signal lands.
    args = ["cv", "--folds", "3", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    args += ["--tracking.experiment", experiment, *QUIET, "--trainer.max_epochs", "25"]
    command = [sys.executable, "-m", "lit_d2l", *args]
    first = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def fold_1_training() -> bool:
        _, folds = cv_runs(client, experiment)
        training = [r for r in folds if r.data.tags["fold"] == "1" and r.info.status == "RUNNING"]
        return finished_per_fold(folds)["0"] == 1 and any(
            client.get_metric_history(r.info.run_id, "train/loss") for r in training
        )

    wait_for(fold_1_training, "fold 0 FINISHED and fold 1 training", timeout_s=300, process=first)
    first.send_signal(signal.SIGHUP)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGHUP, err
    lines = [line for line in err.splitlines() if line.startswith("lit-d2l")]
    assert len(lines) == 1 and lines[0].startswith("lit-d2l: interrupted by SIGHUP"), err
    assert lines[0].endswith(f"continue it with: lit-d2l {shlex.join(args)}"), lines[0]
    assert "fit --resume" not in lines[0]

    (parent,), folds = cv_runs(client, experiment)
    assert parent.info.status == "KILLED"
    (fold_0,) = [r.info.run_id for r in folds if r.data.tags["fold"] == "0"]

    again = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming cross-validation" in again.stdout and "1 of 3 folds done" in again.stdout, again.stdout

    parents, folds = cv_runs(client, experiment)
    assert [p.info.run_id for p in parents] == [parent.info.run_id], "the same parent run goes on"
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert finished_per_fold(folds) == {"0": 1, "1": 1, "2": 1}, "each fold FINISHED exactly once"
    assert [r.info.run_id for r in folds if r.data.tags["fold"] == "0"] == [fold_0], "fold 0 not trained again"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in folds)
    losses = [r.data.metrics["val/loss"] for r in folds if r.info.status == "FINISHED"]
    assert parent.data.metrics["val/loss_mean"] == pytest.approx(statistics.fmean(losses))
    assert parent.data.metrics["val/loss_std"] == pytest.approx(statistics.pstdev(losses))
    assert "over 3 folds" in again.stdout


@pytest.mark.slow
def test_under_ddp_every_process_resumes_the_same_folds(tmp_path, tracking_uri: str, client: MlflowClient, experiment):
    # 300 pooled examples: both folds train on 150, which 2 processes share evenly
    args = ["cv", "--folds", "2", *LINEAR, "--data.num_val", "100", "--trainer.max_epochs", "1", *DDP_QUIET]
    args += ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment, *two_processes("ddp")]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), folds = cv_runs(client, experiment)
    by_fold = {run.data.tags["fold"]: run.info.run_id for run in folds}
    client.set_terminated(parent.info.run_id, "KILLED")  # as if stopped in fold 1: it did not finish
    client.set_terminated(by_fold["1"], "KILLED")

    again = run_cli(*args, cwd=tmp_path)  # rank 0 fits fold 1 only; so must the process it starts for rank 1
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 2 folds done" in again.stdout and again.stdout.count("MLflow parent run") == 1
    parents, folds = cv_runs(client, experiment)
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert finished_per_fold(folds) == {"0": 1, "1": 1}
    assert [r.info.run_id for r in folds if r.data.tags["fold"] == "0"] == [by_fold["0"]]


def test_a_fold_killed_after_its_last_checkpoint_goes_on_from_it_and_one_that_does_not_load_starts_again(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys
) -> None:
    argv = ["cv", "--folds", "2", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, *STEPS]
    assert run_main(argv, capsys)[0] == 0
    (parent,), folds = cv_runs(client, experiment)
    (fold_1,) = [r.info.run_id for r in folds if r.data.tags["fold"] == "1"]
    mean = parent.data.metrics["val/loss_mean"]

    def killed() -> None:  # as if its process died after the fold's last epoch checkpoint, before it ended
        client.set_terminated(fold_1, "KILLED")
        client.set_terminated(parent.info.run_id, "KILLED")

    killed()
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    assert "(1 done before, data.fold 1 goes on from epoch=2-step=" in out
    _, folds = cv_runs(client, experiment)
    assert [(r.info.run_id, r.info.status) for r in folds if r.data.tags["fold"] == "1"] == [(fold_1, "FINISHED")]
    assert client.get_run(parent.info.run_id).data.metrics["val/loss_mean"] == pytest.approx(mean), "its stored values"

    killed()
    checkpoint = next(Path(client.get_run(fold_1).data.tags["lit_d2l.checkpoint_dir"]).glob("*.ckpt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut short
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    assert f"data.fold 1: {checkpoint}: not a readable checkpoint (" in out
    assert "; it is fitted again from its start" in out
    _, folds = cv_runs(client, experiment)
    assert sorted(r.info.status for r in folds if r.data.tags["fold"] == "1") == ["FINISHED", "KILLED"]
    assert client.get_run(parent.info.run_id).data.metrics["val/loss_mean"] == pytest.approx(mean)


def test_a_failing_fold_stops_the_cv_in_one_line_and_running_it_again_fits_that_fold_only(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys, monkeypatch
) -> None:
    fitted: list[int] = []
    execute = fit_run.execute

    def fold_1_fails_once(cli, command: str):
        fitted.append(cli.datamodule.fold)
        if fitted == [0, 1]:
            raise RuntimeError("out of memory (as if)")
        return execute(cli, command)

    monkeypatch.setattr(fit_run, "execute", fold_1_fails_once)
    argv = ["cv", "--folds", "3", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, *TINY]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "lit-d2l: error: data.fold 1: RuntimeError: out of memory (as if); run lit-d2l cv again once it is fixed "
        "or ends"
    ]
    assert fitted == [0, 1], "fold 2 is not fitted after fold 1 failed"
    assert "fold 2/3 (data.fold 1): failed RuntimeError: out of memory (as if)" in out
    (parent,), folds = cv_runs(client, experiment)
    assert parent.info.status == "FAILED"
    assert sorted((r.data.tags["fold"], r.info.status) for r in folds) == [("0", "FINISHED"), ("1", "FAILED")]

    code, out, _ = run_main(argv, capsys)
    assert code == 0 and fitted == [0, 1, 1, 2]
    parents, folds = cv_runs(client, experiment)
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert finished_per_fold(folds) == {"0": 1, "1": 1, "2": 1}


@pytest.mark.slow
def test_folds_in_two_worker_processes_equal_the_folds_fitted_one_after_another(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys
) -> None:
    argv = ["cv", "--folds", "3", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, *QUIET, *STEPS]
    assert run_main([*argv, "--tracking.experiment", experiment], capsys)[0] == 0
    code, out, err = run_main([*argv, "--tracking.experiment", f"{experiment}-2", "--workers", "2"], capsys)
    assert code == 0, err
    assert "3 folds in " in out and "3 finished, 0 diverged, 0 failed" in out
    (one,), one_folds = cv_runs(client, experiment)
    (two,), two_folds = cv_runs(client, f"{experiment}-2")
    assert two.info.status == "FINISHED" and finished_per_fold(two_folds) == {"0": 1, "1": 1, "2": 1}
    assert all(r.data.tags["mlflow.parentRunId"] == two.info.run_id for r in two_folds)

    def by_fold(folds: list) -> list[float]:
        return [r.data.metrics["val/loss"] for r in sorted(folds, key=lambda r: r.data.tags["fold"])]

    assert by_fold(two_folds) == pytest.approx(by_fold(one_folds), abs=1e-6), "each fold as it trains alone"
    assert two.data.metrics["val/loss_mean"] == pytest.approx(one.data.metrics["val/loss_mean"], abs=1e-6)
