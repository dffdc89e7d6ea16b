"""Model selection (D2L 3.6.3): the best arm by its mean validation metric over seeds; its one test."""

from __future__ import annotations

import pytest

from lit_d2l.cli.main import run as lit_d2l
from lit_d2l.errors import UserError
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.selection import direction, select_arm
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import KIND_TAG, TEST_KIND, SweepStore
from tests.sweeps.test_report_units import child
from tests.sweeps.test_sweep import spec_file


def with_acc(run, acc: float):
    run.metrics["val/acc"] = acc
    return run


def test_the_arm_with_the_best_mean_over_seeds_is_selected() -> None:
    children = [
        child({"model.lr": 0.1}, 0, 0.50, start=1),
        child({"model.lr": 0.1}, 1, 0.10, start=2),  # the best single run, but not the best mean
        child({"model.lr": 0.3}, 0, 0.25, start=3),
        child({"model.lr": 0.3}, 1, 0.30, start=4),
    ]
    selection = select_arm(children, "val/loss")
    assert (selection.arm, selection.mode) == ("model.lr=0.3", "min")
    assert [arm for arm, _, _ in selection.ranking] == ["model.lr=0.3", "model.lr=0.1"]
    assert selection.best_run().seed == 0, "the test retrains the selected arm's best seed"
    accuracies = [with_acc(c, acc) for c, acc in zip(children, [0.9, 0.99, 0.8, 0.7], strict=True)]
    assert select_arm(accuracies, "val/acc").arm == "model.lr=0.1", "an accuracy: the highest mean"
    assert select_arm(children, "val/loss", mode="max").arm == "model.lr=0.1", "--mode overrides"


def test_an_arm_that_diverged_on_a_seed_is_not_a_candidate() -> None:
    children = [child({"model.lr": 9.0}, 0, 0.01, start=1), child({"model.lr": 9.0}, 1, 0.02, start=2)]
    children[1].outcome = "diverged"
    children.append(child({"model.lr": 0.1}, 0, 0.5, start=3))
    assert select_arm(children, "val/loss").arm == "model.lr=0.1"
    with pytest.raises(UserError, match="no arm of this sweep logged val/acc"):
        select_arm(children, "val/acc")


def test_the_test_split_and_unknown_directions_are_refused() -> None:
    with pytest.raises(UserError, match="not test/acc"):
        direction("test/acc")
    with pytest.raises(UserError, match="give --mode min or --mode max"):
        direction("weight_norm/w")
    assert direction("weight_norm/w", "min") == "min"
    assert (direction("train/loss_epoch"), direction("val/acc")) == ("min", "max")


@pytest.mark.slow
def test_select_val_loss_and_test_logs_one_test_of_the_best_arm(tmp_path, tracking_uri, client, experiment, capsys):
    body = "grid: {model.l2: [0.0, 3.0]}\nseeds: [0, 1]\noverrides: {data.num_test: 50}\n"
    result = run_sweep(load_spec(spec_file(tmp_path, experiment, body)), tracking_uri=tracking_uri, echo=print)
    store = SweepStore(tracking_uri)
    parent = store.client.get_run(result.parent_run_id)
    children = store.children(parent)
    means = {arm: sum(c.metrics["val/loss"] for c in children if c.arm == arm) / 2 for arm in {c.arm for c in children}}
    best = min(means, key=means.get)
    args = [result.sweep_id, "--out", str(tmp_path / "report"), "--tracking-uri", tracking_uri]
    assert lit_d2l(["report", *args, "--select", "val/loss", "--test"]) == 0
    assert f"**{best}**" in capsys.readouterr().out

    tests = store.selection_tests(parent.info.run_id, parent.info.experiment_id)
    assert len(tests) == 1 and tests[0].status == "FINISHED" and tests[0].arm == best
    assert tests[0].tags[KIND_TAG] == TEST_KIND and "test/loss" in tests[0].metrics
    recorded = client.get_run(parent.info.run_id).data
    assert recorded.metrics["test/loss"] == tests[0].metrics["test/loss"]
    assert recorded.tags["lit_d2l.selection.arm"] == best and recorded.tags["lit_d2l.selection.metric"] == "val/loss"
    assert len(store.children(parent)) == 4, "the test run is not one of the sweep's arm × seed runs"
    with pytest.raises(UserError, match="already tested, once"):
        lit_d2l(["report", *args, "--select", "val/loss", "--test"])
    assert len(store.selection_tests(parent.info.run_id, parent.info.experiment_id)) == 1


@pytest.mark.slow
def test_testing_a_sweep_without_a_test_split_says_how_to_get_one(tmp_path, tracking_uri, experiment) -> None:
    body = "grid: {model.l2: [0.0]}\noverrides: {data.num_test: 0}\n"
    result = run_sweep(load_spec(spec_file(tmp_path, experiment, body)), tracking_uri=tracking_uri, echo=print)
    args = [result.sweep_id, "--out", str(tmp_path / "report"), "--tracking-uri", tracking_uri]
    with pytest.raises(UserError, match=r"has no test split \(data.num_test 0\): give data.num_test in the spec's"):
        lit_d2l(["report", *args, "--select", "val/loss", "--test"])
    store = SweepStore(tracking_uri)
    parent = store.client.get_run(result.parent_run_id)
    assert store.selection_tests(parent.info.run_id, parent.info.experiment_id) == [], "nothing tested, no run left"


def test_a_sweep_with_runs_left_has_a_verdict_that_says_so_and_is_not_tested(
    tmp_path, tracking_uri, client, experiment, capsys
) -> None:
    """A report made while a sweep runs (or after some of its runs failed) says its verdict is not final, and its
    selected arm is not tested: the test split is used once, on the choice among every run."""
    body = "grid: {model.l2: [0.0, 3.0]}\noverrides: {data.num_test: 50, trainer.max_epochs: 2}\n"
    result = run_sweep(load_spec(spec_file(tmp_path, experiment, body)), tracking_uri=tracking_uri, echo=print)
    store = SweepStore(tracking_uri)
    parent = store.client.get_run(result.parent_run_id)
    client.set_terminated(store.children(parent)[0].run_id, "FAILED")  # as if it had failed: 1 of 2 finished
    client.update_run(parent.info.run_id, status="RUNNING")  # as while the sweep's process trains the rest
    args = [result.sweep_id, "--out", str(tmp_path / "report"), "--tracking-uri", tracking_uri]
    for select in ([], ["--select", "val/loss"]):
        assert lit_d2l(["report", *args, *select]) == 0
        said = "**Not final: 1 of 2 runs have finished (the sweep is still running); this verdict may change.**"
        assert said in capsys.readouterr().out
    with pytest.raises(UserError, match=r"^Not final: 1 of 2 runs have finished \(the sweep is still running\): test"):
        lit_d2l(["report", *args, "--select", "val/loss", "--test"])
    assert store.selection_tests(parent.info.run_id, parent.info.experiment_id) == []
    client.set_terminated(parent.info.run_id, "FAILED")  # the sweep ended with that run failed
    with pytest.raises(UserError, match=r"\(run its lit-d2l ablate again for them\): test the selected arm once it"):
        lit_d2l(["report", *args, "--select", "val/loss", "--test"])
    with pytest.raises(UserError, match="not test/loss: the test split is for the selected arm only"):
        lit_d2l(["report", *args, "--select", "test/loss"])  # said as such, not as a metric no run logged
