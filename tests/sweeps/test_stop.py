"""A sweep stopped by a signal: one line, every interrupted run KILLED (none FAILED or RUNNING), quickly."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lit_d2l.cli.main import main
from lit_d2l.processes import interrupts
from lit_d2l.processes.interrupts import Interrupted, stop_signals_handled
from lit_d2l.sweeps import engine
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import KIND_TAG, SweepStore
from tests.conftest import REPO
from tests.sweeps.test_sweep import spec_file
from tests.test_cli import run_main
from tests.test_resilience import ENV, children_of, gone, running_runs, wait_for

#: A stop must end the command within this; a machine busier than its cores gets proportionally longer.
STOP_S = 5.0


def _signal_after_claim(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SweepStore.claim_pair sends this process SIGTERM once it has claimed: the signal lands between the
    claim and the fit. Returns the runs claimed."""
    claimed: list[str] = []
    claim_pair = SweepStore.claim_pair

    def claim_then_signal(self, *args, **kwargs):
        run_id, taken = claim_pair(self, *args, **kwargs)
        claimed.append(run_id)
        os.kill(os.getpid(), signal.SIGTERM)
        return run_id, taken

    monkeypatch.setattr(SweepStore, "claim_pair", claim_then_signal)
    return claimed


def test_a_stop_between_claim_and_fit_leaves_the_pair_killed(
    tmp_path, tracking_uri, client, experiment, monkeypatch, capsys
):
    spec = load_spec(spec_file(tmp_path, experiment, "grid: {model.l2: [0.0]}\n"))
    claimed = _signal_after_claim(monkeypatch)
    with stop_signals_handled(), pytest.raises(Interrupted):
        engine.run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None, pack="off")
    (run_id,) = claimed
    assert client.get_run(run_id).info.status == "KILLED"  # not FAILED: nothing failed, it was stopped
    # An arm keeps no checkpoint: `fit --resume` of it says what finishes it.
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--resume", run_id, "--tracking.uri", tracking_uri])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lit-d2l: error: run {run_id} is an arm of sweep run ") and "ablate" in err, err


def test_a_stop_while_a_pack_is_built_leaves_every_claimed_run_killed(
    tmp_path, tracking_uri, client, experiment, monkeypatch
):
    """A signal lands as the pack's second arm is built: the arm built before it, that arm and the arms not built
    yet were all claimed (their runs exist, RUNNING): each ends KILLED at once, not left for a later stale check."""
    from lit_d2l.sweeps.packs import run as pack_run

    built, build_arm = [], pack_run.build_arm

    def signal_at_second(*args, **kwargs):
        built.append(args)
        if len(built) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return build_arm(*args, **kwargs)

    monkeypatch.setattr(pack_run, "build_arm", signal_at_second)
    spec = load_spec(spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 1.0, 2.0, 3.0]}\n"))
    with stop_signals_handled(), pytest.raises(Interrupted):
        engine.run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None)
    (exp,) = [e for e in client.search_experiments() if e.name == experiment]
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(KIND_TAG) != "sweep"]
    assert len(built) == 2 and len(children) == 4  # 4 claimed, 2 reached building
    assert Counter(r.info.status for r in children) == {"KILLED": 4}


def test_a_stopped_sweep_names_the_command_that_resumes_it(tmp_path, tracking_uri, experiment, monkeypatch, capsys):
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0]}\n")
    _signal_after_claim(monkeypatch)
    argv = ["ablate", str(path), "--tracking-uri", tracking_uri, "--pack", "off", "--no-report"]
    code, _, err = run_main([*argv, "--fresh"], capsys)
    assert code == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.startswith("lit-d2l")]
    # --fresh is left out: run again, the sweep resumes in the same parent run instead of starting another
    assert lines == [f"lit-d2l: interrupted by SIGTERM; continue it with: lit-d2l {shlex.join(argv)}"], err

    monkeypatch.undo()
    code, out, err = run_main(argv, capsys)  # stopped before its fit began: no checkpoint, so from the start
    assert code == 0, err
    assert "  1 pair that did not finish train again from the start: model.l2=0.0 seed 0\n" in out


def test_a_sweep_stopped_before_its_parent_run_exists_keeps_fresh_in_its_rerun(
    tmp_path, tracking_uri, experiment, monkeypatch, capsys
):
    """Stopped while its arms are checked: no new parent yet, so the same command starts it, --fresh included;
    without --fresh it would resume the sweep's previous parent instead."""
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0]}\n")
    parse_fit = engine.parse_fit

    def stop_while_checking(args):
        os.kill(os.getpid(), signal.SIGTERM)
        return parse_fit(args)

    monkeypatch.setattr(engine, "parse_fit", stop_while_checking)
    argv = ["ablate", str(path), "--tracking-uri", tracking_uri, "--pack", "off", "--no-report", "--fresh"]
    code, _, err = run_main(argv, capsys)
    assert code == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.startswith("lit-d2l")]
    assert lines == [f"lit-d2l: interrupted by SIGTERM; continue it with: lit-d2l {shlex.join(argv)}"], err


def test_in_a_worker_a_stop_between_claim_and_fit_is_acted_on_before_the_fit(
    tmp_path, tracking_uri, client, experiment, monkeypatch
):
    # A worker only notes signals (they would land anywhere, also in a weakref callback, and be "ignored").
    spec = load_spec(spec_file(tmp_path, experiment, "grid: {model.l2: [0.0]}\n"))
    plan = engine.plan_sweep(spec, tracking_uri, echo=lambda _: None)
    claimed = _signal_after_claim(monkeypatch)
    with stop_signals_handled(), interrupts.deferred(), pytest.raises(Interrupted):
        engine._run_task(plan.tasks[0])
    (run_id,) = claimed
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "train/loss" not in run.data.metrics  # stopped before training
    plan.parent.finalize("failed")


@pytest.mark.slow
def test_sigterm_and_ctrl_c_of_a_sweep_with_workers_stop_it_cleanly_and_quickly(tmp_path, tracking_uri, client):
    body = "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 3000}\n"
    trials = [("SIGTERM", "auto", False), ("SIGINT", "auto", True), ("SIGTERM", "off", False), ("SIGINT", "off", True)]
    for index, (name, pack, to_group) in enumerate(trials):
        experiment = f"stop-{index}-{os.getpid()}"
        path = spec_file(tmp_path, experiment, body)
        args = ["ablate", str(path), "--tracking-uri", tracking_uri, "--workers", "2", "--no-report", "--pack", pack]
        sweep = subprocess.Popen(
            [sys.executable, "-m", "lit_d2l", *args],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, as a terminal's foreground job: Ctrl-C reaches every process
        )
        busy = 5 if pack == "auto" else 3  # the parent, and both workers' runs (a pack holds two)
        wait_for(lambda e=experiment, n=busy: len(running_runs(client, e)) >= n, "both training", process=sweep)
        signum = getattr(signal, name)
        sent = time.monotonic()
        os.killpg(sweep.pid, signum) if to_group else sweep.send_signal(signum)
        _, err = sweep.communicate(timeout=60)
        took = time.monotonic() - sent
        trial = f"{name} {'to the group' if to_group else 'to ablate'}, --pack {pack}"
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        assert took < STOP_S * max(1.0, load), f"{trial}: ablate took {took:.1f} s to go (load {load:.1f} per core)"
        assert sweep.returncode == 128 + signum, (trial, err)
        rerun = f"continue it with: lit-d2l {shlex.join(args)}"
        assert [line for line in err.splitlines() if line.strip()] == [f"lit-d2l: interrupted by {name}; {rerun}"], (
            trial,
            err,
        )

        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id])
        (parent,) = [run for run in runs if run.data.tags.get(KIND_TAG) == "sweep"]
        assert parent.info.status == "KILLED", trial
        children = Counter(run.info.status for run in runs if run is not parent)
        assert children["KILLED"] >= 2 and set(children) <= {"FINISHED", "KILLED"}, (trial, children)


@pytest.mark.slow
def test_after_sigkill_of_a_sweep_its_workers_go_within_seconds_leaving_no_run_running(tmp_path, tracking_uri, client):
    body = "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 3000}\n"
    for trial in range(3):
        experiment = f"sigkill-{trial}-{os.getpid()}"
        path = spec_file(tmp_path, experiment, body)
        args = ["ablate", str(path), "--tracking-uri", tracking_uri, "--workers", "2", "--no-report", "--pack", "off"]
        sweep = subprocess.Popen([sys.executable, "-m", "lit_d2l", *args], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL)
        wait_for(lambda e=experiment: len(running_runs(client, e)) >= 3, "both workers training", process=sweep)
        workers = [pid for pid in children_of(sweep.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        sweep.kill()
        killed = time.monotonic()
        sweep.wait()
        wait_for(lambda w=workers: all(gone(pid) for pid in w), "the workers gone", timeout_s=60)
        took = time.monotonic() - killed
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        assert took < STOP_S * max(1.0, load), f"trial {trial}: workers took {took:.1f} s to go (load {load:.1f})"
        exp = client.get_experiment_by_name(experiment)
        children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(KIND_TAG) != "sweep"]
        assert {r.info.status for r in children} == {"KILLED"}, trial  # ended by the workers themselves


@pytest.mark.slow  # the fast suite has the same resume path through cv (test_crossval_resume.py)
def test_an_arm_stopped_mid_fit_goes_on_in_its_own_run_from_its_stops_checkpoint(
    tmp_path, tracking_uri, client, experiment, monkeypatch, capsys
):
    from lit_d2l.fit import run as fit_run
    from tests.test_resume import SignalAtStep

    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\n")  # 10 epochs of 4 steps
    execute, signalled = fit_run.execute, []

    def signal_in_second_arm(cli, command: str):
        if cli.model.l2 == 3.0 and not signalled:  # a real SIGHUP at step 10 of arm l2=3.0, once
            signalled.append(True)
            cli.trainer.callbacks.append(SignalAtStep(10, signal.SIGHUP))
        return execute(cli, command)

    monkeypatch.setattr(fit_run, "execute", signal_in_second_arm)
    argv = ["ablate", str(path), "--tracking-uri", tracking_uri, "--pack", "off", "--no-report"]
    code, _, err = run_main(argv, capsys)
    assert code == 128 + signal.SIGHUP, err
    store = SweepStore(tracking_uri)
    (parent,) = [r for r in client.search_runs([store.client.get_experiment_by_name(experiment).experiment_id])
                 if r.data.tags.get(KIND_TAG) == "sweep"]  # fmt: skip
    stopped = {(c.arm, c.status): c.run_id for c in store.children(parent)}
    assert set(stopped) == {("model.l2=0.0", "FINISHED"), ("model.l2=3.0", "KILLED")}

    code, out, err = run_main(argv, capsys)  # the same command: the arm goes on where it stopped
    assert code == 0, err
    run_id = stopped["model.l2=3.0", "KILLED"]
    assert f"model.l2=3.0 seed 0 goes on from interrupted-step=10.ckpt (run {run_id})" in out
    children = store.children(client.get_run(parent.info.run_id))
    assert sorted((c.arm, c.run_id, c.status) for c in children) == sorted(
        [("model.l2=0.0", stopped["model.l2=0.0", "FINISHED"], "FINISHED"), ("model.l2=3.0", run_id, "FINISHED")]
    ), "in its own run, not a new one"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"

    code, _, _ = run_main([*argv, "--fresh"], capsys)  # the same arm never stopped
    assert code == 0
    (whole,) = [r.info.run_id for r in client.search_runs([parent.info.experiment_id], "tags.arm = 'model.l2=3.0'")
                if r.info.run_id != run_id]  # fmt: skip
    for key, steps in (("train/loss", 40), ("val/loss", 10)):  # every step once, as the whole fit logs it
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        reference = sorted((m.step, m.value) for m in client.get_metric_history(whole, key))
        assert [s for s, _ in history] == [s for s, _ in reference] and len(history) == steps, key
        assert [v for _, v in history] == pytest.approx([v for _, v in reference], abs=1e-6), key
