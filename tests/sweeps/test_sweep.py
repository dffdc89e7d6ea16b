"""Sweeps end to end on a temporary store: structure, resume after a kill, divergence, workers, reports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.reports.report import build_report
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import SweepStore
from tests.conftest import REPO

EXPERIMENTS = REPO / "experiments"


def spec_file(tmp_path: Path, name: str, body: str, base: str = "weight_decay_2nd_ed.yaml") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase: {EXPERIMENTS / base}\n{body}")
    return path


def children_by_pair(tracking_uri: str, parent_run_id: str) -> dict[tuple[str, int], list[str]]:
    store = SweepStore(tracking_uri)
    pairs: dict[tuple[str, int], list[str]] = {}
    for child in store.children(store.client.get_run(parent_run_id)):
        pairs.setdefault((child.arm, child.seed), []).append(child.status)
    return pairs


@pytest.mark.slow  # the fast suite has test_ablate_and_report_commands: one seed, through the CLI
def test_parent_children_summary_and_report(tmp_path, tracking_uri, client: MlflowClient, experiment) -> None:
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\n")
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    pairs = children_by_pair(tracking_uri, result.parent_run_id)
    assert pairs == {(f"model.l2={l2}", seed): ["FINISHED"] for l2 in ("0.0", "3.0") for seed in (0, 1)}
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lit_d2l.sweep_id"] == result.sweep_id
    child = client.search_runs([parent.info.experiment_id], "tags.arm = 'model.l2=3.0' and tags.seed = '1'")[0]
    assert child.data.params["model.l2"] == "3.0" and child.data.params["seed_everything"] == "1"
    assert child.data.params["l2"] == "3.0", "the swept value as a top-level param"
    assert child.data.tags["device"] == "cpu" and child.info.run_name == "l2=3/s1"
    names = [run.info.run_name for run in client.search_runs([parent.info.experiment_id], "tags.arm LIKE 'model.%'")]
    assert sorted(names) == ["l2=0/s0", "l2=0/s1", "l2=3/s0", "l2=3/s1"]

    def mean_of(arm: str, metric: str) -> float:
        runs = client.search_runs([parent.info.experiment_id], f"tags.arm = '{arm}'")
        return sum(run.data.metrics[metric] for run in runs) / len(runs)

    # D2L 2nd ed. §3.7 in miniature: the penalty trades training fit for validation loss and smaller weights.
    assert mean_of("model.l2=3.0", "val/loss") < mean_of("model.l2=0.0", "val/loss")
    assert mean_of("model.l2=3.0", "weight_norm") < mean_of("model.l2=0.0", "weight_norm")
    assert mean_of("model.l2=3.0", "train/loss_epoch") > mean_of("model.l2=0.0", "train/loss_epoch")

    report = build_report(result.sweep_id, out_dir=tmp_path / "report", tracking_uri=tracking_uri).path
    text = report.read_text()
    assert "l2=0 | 2 | 0 |" in text and "l2=3 | 2 | 0 |" in text  # short names; the best marked ★
    # J (the objective) and L (the data loss) side by side, each named in the legend.
    assert "| train/loss_epoch | train/loss_data | val/loss |" in text
    assert "`train/loss_data`: L alone" in text and "`train/loss_epoch`: J = L" in text
    assert mean_of("model.l2=3.0", "train/loss_data") < mean_of("model.l2=3.0", "train/loss_epoch")
    header = next(line for line in text.splitlines() if line.startswith("| arm |")).split(" | ")
    row = next(line for line in text.splitlines() if "l2=0 | 2 | 0 |" in line).split(" | ")
    j, l_ = row[header.index("train/loss_epoch")], row[header.index("train/loss_data")]
    assert l_ == j != "–", "where λ = 0, L is J: the table shows it, as the figures draw it"
    assert "![Final train/loss_data, " in text and "![Final train/loss_epoch" not in text, "alt text as drawn"
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"report.md", "along_model_l2.png", "curves.png"}
    logged = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert "report/report.md" in logged
    assert {a.path for a in client.list_artifacts(result.parent_run_id)} >= {"sweep.yaml", "summary.md", "report"}

    again = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    assert again.parent_run_id == result.parent_run_id and again.skipped == 4 and again.outcomes == []


@pytest.mark.slow
def test_a_diverging_arm_is_tagged_and_the_sweep_goes_on(tmp_path, tracking_uri, client, experiment) -> None:
    path = spec_file(tmp_path, experiment, "grid: {model.lr: [0.01, 1000.0]}\nmax_grad_norm: 1.0e4\n")
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    outcomes = {o.arm: o.outcome for o in result.outcomes}
    assert outcomes == {"model.lr=0.01": "finished", "model.lr=1000.0": "diverged"}
    store = SweepStore(tracking_uri)
    children = {c.arm: c for c in store.children(store.client.get_run(result.parent_run_id))}
    diverged = children["model.lr=1000.0"]
    assert diverged.status == "FINISHED" and diverged.tags["outcome"] == "diverged"
    assert int(diverged.tags["diverged_at_step"]) >= 0
    names = {c.arm: c.tags["mlflow.runName"] for c in children.values()}
    assert names == {"model.lr=0.01": "lr=0.01/s0", "model.lr=1000.0": "lr=1000/s0 ✗ diverged"}  # in the runs table
    text = build_report(result.sweep_id, out_dir=tmp_path / "r", tracking_uri=tracking_uri).path.read_text()
    assert f"lr=1000 | 1 | 1 (step {diverged.tags['diverged_at_step']}) |" in text


@pytest.mark.slow
def test_workers_run_arms_in_parallel_and_a_failing_arm_does_not_stop_the_others(
    tmp_path, tracking_uri, client, experiment
) -> None:
    # Lightning refuses max_epochs -5 only when that arm's Trainer is built, after the sweep started.
    path = spec_file(tmp_path, experiment, "grid: {trainer.max_epochs: [-5, 2, 3]}\n")
    result = run_sweep(load_spec(path), workers=2, tracking_uri=tracking_uri, echo=lambda _: None)
    outcomes = {o.arm: o for o in result.outcomes}
    assert outcomes["trainer.max_epochs=-5"].outcome == "failed"
    assert "max_epochs" in outcomes["trainer.max_epochs=-5"].error
    assert outcomes["trainer.max_epochs=2"].outcome == outcomes["trainer.max_epochs=3"].outcome == "finished"
    assert client.get_run(result.parent_run_id).info.status == "FAILED", "not every pair has a finished run"
    statuses = sorted(c.status for c in SweepStore(tracking_uri).children(client.get_run(result.parent_run_id)))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"], "the failed arm's run is closed, not left RUNNING"


def test_an_arm_value_the_model_refuses_stops_the_sweep_before_anything_runs(
    tmp_path, tracking_uri, client, experiment
) -> None:
    from lit_d2l.errors import ConfigError

    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, -1.0]}\n")
    with pytest.raises(ConfigError, match=r"model\.l2 must be >= 0"):
        run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    assert client.get_experiment_by_name(experiment) is None


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_exactly_one_finished_child_per_pair(tmp_path, tracking_uri, experiment) -> None:
    path = spec_file(
        tmp_path, experiment, "grid: {model.l2: [0.0, 1.0, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 400}\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # One arm at a time, so that a child is RUNNING for a whole fit (a pack ends its runs together; packed
    # sweeps after a kill: tests/sweeps/packs/test_packed_resume.py).
    command = [sys.executable, "-m", "lit_d2l", "ablate", str(path), "--tracking-uri", tracking_uri, "--no-report"]
    command += ["--pack", "off"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = SweepStore(tracking_uri)
    spec = load_spec(path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it could be killed mid-arm"
        parent_id = store.find_parent(experiment, spec.sweep_id)
        if parent_id:
            statuses = [c.status for c in store.children(store.client.get_run(parent_id))]
            if statuses.count("FINISHED") >= 2 and "RUNNING" in statuses:
                break
        time.sleep(0.2)
    else:
        pytest.fail("no child RUNNING after two FINISHED within 180 s")
    process.send_signal(signal.SIGKILL)  # no chance to clean up: a child is left RUNNING
    process.communicate(timeout=30)  # reaps it and closes its output pipe
    before = children_by_pair(tracking_uri, parent_id)
    assert any("RUNNING" in statuses for statuses in before.values())

    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None)
    assert result.parent_run_id == parent_id
    after = children_by_pair(tracking_uri, parent_id)
    assert set(after) == {(arm.key, seed) for arm, seed in spec.pairs()}
    for pair, statuses in after.items():
        assert statuses.count("FINISHED") == 1, (pair, statuses)
        assert "RUNNING" not in statuses
    assert "KILLED" in [s for statuses in after.values() for s in statuses]
    assert store.client.get_run(parent_id).info.status == "FINISHED"


@pytest.mark.slow
def test_ablate_and_report_commands(tmp_path, tracking_uri, client, experiment, capsys, monkeypatch) -> None:
    from lit_d2l.cli.main import main

    monkeypatch.chdir(tmp_path)
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(path), "--tracking-uri", tracking_uri])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    sweep_id = load_spec(path).sweep_id
    assert f"sweep {sweep_id}: parent run" in out and (tmp_path / "reports" / sweep_id / "report.md").is_file()
    # Before the first arm trains: what the sweep is, then how it runs, where it records and how to resume.
    checking = out.index(f"sweep {sweep_id}: 2 arms x 1 seed = 2 runs; checking every arm's settings ...\n")
    start = re.search(
        rf"sweep {sweep_id}: 2 runs to train as .+ on 1 worker; parent run \w+\. Ctrl-C stops; run it", out
    )
    assert start and checking < start.start() < out.index("arm 1/2")
    arms = [line for line in out.splitlines() if line.startswith("arm ")]
    assert [line.split(":")[0] for line in arms] == ["arm 1/2 model.l2=0.0 seed 0", "arm 2/2 model.l2=3.0 seed 0"]
    assert all(re.search(r": finished val/loss=\S+ \(elapsed \d+:\d\d, ETA \d+:\d\d\)$", line) for line in arms)
    assert re.search(rf"sweep {sweep_id}: 2 arm runs in \d+:\d\d: 2 finished, 0 diverged, 0 failed, 0 skipped\n", out)
    verdict = re.search(r"^Verdict: l2=\d is best on val/loss\n", out, re.M)  # the report's headline, then its path
    assert verdict and out.index("report: ", verdict.start()) == verdict.end()
    store = f"--tracking-uri {tracking_uri}"  # not the default store: the follow-up commands name it
    assert f"(FINISHED); view it with: lit-d2l report {sweep_id} {store} (report.html), or lit-d2l ui {store}" in out
    parent_id = re.search(rf"sweep {sweep_id}: parent run (\w+) ", out).group(1)
    assert children_by_pair(tracking_uri, parent_id) == {
        ("model.l2=0.0", 0): ["FINISHED"],
        ("model.l2=3.0", 0): ["FINISHED"],
    }
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["lit_d2l.sweep_id"] == sweep_id
    runs = {run.data.tags["arm"]: run for run in client.search_runs([parent.info.experiment_id], "tags.seed = '0'")}
    assert runs["model.l2=3.0"].data.params["model.l2"] == "3.0" and runs["model.l2=3.0"].data.tags["device"] == "cpu"
    penalised, plain = runs["model.l2=3.0"].data.metrics, runs["model.l2=0.0"].data.metrics
    # D2L 2nd ed. §3.7 in miniature: the penalty trades training fit for validation loss and smaller weights.
    assert penalised["val/loss"] < plain["val/loss"] and penalised["weight_norm"] < plain["weight_norm"]
    assert penalised["train/loss_epoch"] > plain["train/loss_epoch"] > 0
    assert {a.path for a in client.list_artifacts(parent_id)} >= {"sweep.yaml", "summary.md", "report"}
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent_id, "report")}

    with pytest.raises(SystemExit) as exit_info:  # run again: it resumes, and there is nothing left to run
        main(["ablate", str(path), "--tracking-uri", tracking_uri, "--no-report"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and f"resuming sweep {sweep_id}: 2 of 2 pairs done" in out
    assert "arm 1/" not in out and re.search(r": 0 arm runs in \d+:\d\d: 0 finished, .*; 2 done before\n", out)
    assert f"parent run {parent_id} (FINISHED)" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["report", sweep_id, "--out", str(tmp_path / "again"), "--tracking-uri", tracking_uri])
    assert exit_info.value.code == 0
    assert "l2=3 | 1 | 0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "no-such-sweep", "--tracking-uri", tracking_uri])
    assert exit_info.value.code == 2
    assert "no sweep 'no-such-sweep'" in capsys.readouterr().err


def test_a_spec_metric_no_run_logs_is_said_once_the_first_run_finishes(
    tmp_path, tracking_uri, experiment, capsys
) -> None:
    """A misspelt metric (val/los) is said while the sweep trains, with the name it most likely meant."""
    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\nmetrics: [val/los, val/loss, grad/none]\n")
    path.write_text(path.read_text() + "overrides: {trainer.max_epochs: 2}\n")
    lines: list[str] = []
    run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lines.append, pack="off")  # arm by arm
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(notes) == 2, "once, for each metric no run logged"
    assert notes[0].startswith("note: the first run to finish logged no val/los (of the spec's metrics:); did you ")
    assert "mean val/loss? Ctrl-C and fix the spec (a new sweep), or let it train" in notes[0]
    assert notes[1].startswith("note: the first run to finish logged no grad/none (of the spec's metrics:); it ")
    assert "logged " in notes[1] and "val/loss" in notes[1]
    assert lines.index(notes[0]) < next(i for i, line in enumerate(lines) if line.startswith("arm 2/2"))
    packed = spec_file(tmp_path, f"{experiment}-packed", path.read_text().split("\n", 2)[2])
    lines.clear()
    result = run_sweep(load_spec(packed), tracking_uri=tracking_uri, echo=lines.append)  # one pack: nothing to stop
    assert not [line for line in lines if line.startswith("note: ")], "the verdict says it"
    said = build_report(result.sweep_id, out_dir=tmp_path / "as-specified", tracking_uri=tracking_uri).path.read_text()
    assert "- `val/los`: no run logged this metric" in said and "lit-d2l report SWEEP --metrics NAME" in said
    assert re.search(r"Trained: \w+, the model's own SGD, 2 epochs \(as the runs record it\)\.", said)
    # Ranked again on what the runs logged, without training again: `lit-d2l report ID --metrics val/loss`
    from tests.test_cli import run_main

    argv = ["report", result.sweep_id, "--metrics", "val/loss", "--tracking-uri", tracking_uri]
    client = MlflowClient(tracking_uri)
    recorded = client.get_run(result.parent_run_id).data
    code, out, _ = run_main([*argv, "--out", str(tmp_path / "again")], capsys)
    assert code == 0 and "no run logged" not in out and re.search(r"^## Verdict: l2=\d is best on val/loss", out, re.M)
    # A view: the parent keeps its verdict on the spec's metrics (description, best/* metrics, tags, report/).
    assert "not recorded: the parent run keeps its verdict on the spec's metrics" in out
    now = client.get_run(result.parent_run_id).data
    assert (now.tags, now.metrics) == (recorded.tags, recorded.metrics)
    assert "no run logged this metric" in now.tags["mlflow.note.content"]
    logged = client.download_artifacts(result.parent_run_id, "report/report.md", str(tmp_path / "logged"))
    assert "val/los`: no run logged" in Path(logged).read_text()
    # A name misspelt on the command line: one line, and the report written before is left as it was.
    before = (tmp_path / "again" / "report.md").stat().st_mtime_ns
    for option in (["--metrics", "val/loss", "val/los"], ["--select", "val/los"], ["--select", "val/los", "--test"]):
        code, out, err = run_main([*argv[:2], *option, *argv[4:], "--out", str(tmp_path / "again")], capsys)
        assert (code, out) == (2, ""), (code, out)
        assert (
            err.strip()
            == f"lit-d2l: error: {option[0]} val/los: no finished run of this sweep logged it; did you mean val/loss?"
        )
    assert (tmp_path / "again" / "report.md").stat().st_mtime_ns == before


def test_the_sweep_says_why_runs_train_alone(tmp_path, tracking_uri, experiment) -> None:
    """A model the plan's trial step cannot vectorize: said at the start of the real run, as --dry-run says it."""
    base = tmp_path / "own.yaml"
    base.write_text(
        "trainer: {max_epochs: 1}\nmodel: tests.sweeps.packs.own_models.FunctionalDropoutMLP\n"
        "data: {class_path: lit_d2l.data.GaussianClusters, init_args: {num_train: 64, num_val: 32}}\n"
    )
    lines: list[str] = []
    spec = load_spec(spec_file(tmp_path, experiment, "grid: {model.lr: [0.1, 0.2]}\n", str(base)))
    run_sweep(spec, tracking_uri=tracking_uri, echo=lines.append)
    assert "as 2 single fits on 1 worker" in lines[0]
    assert lines[1] == "  2 runs alone: FunctionalDropoutMLP's forward draws random numbers outside its dropout " + (
        "modules (e.g. nn.functional.dropout), which a pack cannot draw from each arm's own stream as its solo fit "
        "does; use nn.Dropout modules"
    )


@pytest.mark.slow  # a sweep of two fits
def test_a_run_that_a_bug_in_the_model_fails_keeps_its_traceback(tmp_path, tracking_uri, client, experiment) -> None:
    """The sweep's line for a failed arm has room for one line of the error: the whole traceback is the run's
    error.txt, and the line says so (it was kept nowhere)."""
    base = tmp_path / "broken.yaml"
    base.write_text(
        "trainer: {max_epochs: 1}\nmodel: tests.sweeps.packs.own_models.BrokenMLP\n"
        "data: {class_path: lit_d2l.data.GaussianClusters, init_args: {num_train: 64, num_val: 32}}\n"
    )
    spec = load_spec(spec_file(tmp_path, experiment, "grid: {model.lr: [0.1, 0.2]}\n", str(base)))
    lines: list[str] = []
    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lines.append)
    assert lines[1].startswith("  2 runs alone: BrokenMLP fails on two training examples even alone, as its fit will:")
    assert [o.outcome for o in result.outcomes] == ["failed", "failed"]
    for outcome in result.outcomes:
        assert outcome.error is not None and outcome.error.startswith("RuntimeError: shape '[-1, 7]' is invalid")
        assert outcome.error.endswith("(the traceback is error.txt in its run)")
    for child in SweepStore(tracking_uri).children(client.get_run(result.parent_run_id)):
        assert child.status == "FAILED"
        kept = Path(client.download_artifacts(child.run_id, "error.txt", str(tmp_path / child.run_id))).read_text()
        assert kept.startswith("Traceback (most recent call last):") and "reshape(-1, 7)" in kept


def test_a_sweep_left_short_by_a_stop_elsewhere_says_so_and_ends_killed(tmp_path, tracking_uri, client, experiment):
    """Another process took one pair and was stopped in it: this process trains the rest, then says which pair is
    not FINISHED and how to finish it, and ends the parent KILLED (nothing failed), not FAILED without a word."""
    from lit_d2l.sweeps.engine import plan_sweep, record_sweep, run_pairs

    path = spec_file(tmp_path, experiment, "grid: {model.l2: [0.0, 3.0]}\noverrides: {trainer.max_epochs: 1}\n")
    plan = plan_sweep(load_spec(path), tracking_uri, echo=lambda _: None)
    stopped, mine = plan.tasks
    other = plan.store.start_run(
        plan.store.client.get_run(plan.parent.run_id).info.experiment_id, "other", stopped.tags
    )
    client.set_terminated(other, "KILLED")  # the other process's pair, stopped
    plan.tasks = [mine]
    lines: list[str] = []
    result = record_sweep(plan, run_pairs(plan, echo=lambda _: None), echo=lines.append)
    assert [o.outcome for o in result.outcomes] == ["finished"]
    assert lines[-1] == (
        "1 pair not FINISHED (model.l2=0.0 seed 0): stopped (here or in another process); "
        "run the same command again to train it"
    )
    assert client.get_run(result.parent_run_id).info.status == result.status == "KILLED"


def test_workers_with_a_fit_of_several_processes_are_refused_before_anything_is_recorded(
    tmp_path, tracking_uri, client, experiment, capsys
) -> None:
    from tests.test_cli import assert_one_error_line, run_main

    body = "grid: {model.l2: [0.0, 3.0]}\noverrides: {trainer.devices: 2, trainer.accelerator: cpu}\n"
    path = spec_file(tmp_path, experiment, body)
    code, _, err = run_main(["ablate", str(path), "--tracking-uri", tracking_uri, "--workers", "2"], capsys)
    pattern = r"--workers fits each run in one process, but trainer.devices x trainer.num_nodes is 2 \(one fit in "
    assert_one_error_line(code, err, pattern + r"several processes\): give one or the other$")
    assert client.get_experiment_by_name(experiment) is None, "nothing recorded"
