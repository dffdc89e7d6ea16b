"""The verdict of a sweep, from synthetic runs: a clear winner, a tie, a diverged arm, best per group."""

from __future__ import annotations

import json

import pytest

from lit_d2l.sweeps.reports.verdict import goal, sweep_verdict, verdict, verdicts_per_group
from lit_d2l.tracking.sweeps import Child


def child(settings: dict, seed: int, value: float | None, metric: str = "val/loss", diverged: bool = False) -> Child:
    arm = ";".join(f"{key}={json.dumps(v)}" for key, v in settings.items())
    return Child(
        run_id=f"{arm}/{seed}",
        arm=arm,
        seed=seed,
        status="FINISHED",
        outcome="diverged" if diverged else "finished",
        metrics={} if value is None else {metric: value},
        tags={"arm_settings": json.dumps(settings)},
    )


def sweep(values: dict[float, list[float]], metric: str = "val/loss") -> list[Child]:
    return [child({"model.l2": l2}, seed, v, metric) for l2, seeds in values.items() for seed, v in enumerate(seeds)]


def test_a_clear_winner_is_distinguishable_from_the_runner_up() -> None:
    children = sweep({0.0: [1.00, 1.10, 0.95], 1.0: [0.10, 0.12, 0.11], 3.0: [0.30, 0.33, 0.31]})
    result = verdict(children, "val/loss")
    assert result.best is not None and result.best.arm == "model.l2=1.0"
    assert result.best.mean == pytest.approx(0.11)
    assert result.comparison is not None and result.comparison.runner_up.arm == "model.l2=3.0"
    assert "paired t-test over seeds 0, 1, 2" in result.comparison.test
    assert result.comparison.distinguishable and not result.tie
    assert result.text().startswith("`val/loss` (lowest is best): **l2=1**, 0.11 ± ")
    assert "better than the runner-up l2=3" in result.text()
    assert result.headline() == "l2=1 is best on val/loss, ahead of l2=3 over seeds"


def test_arms_the_seeds_cannot_tell_apart_are_a_tie() -> None:
    children = sweep({1.0: [0.10, 0.30, 0.20], 3.0: [0.21, 0.12, 0.29]})
    result = verdict(children, "val/loss")
    assert result.tie
    assert result.comparison is not None and result.comparison.p_value is not None
    assert result.comparison.p_value >= 0.05
    assert "a tie with the runner-up" in result.text()
    assert result.headline() == "l2=1 is best on val/loss, a tie with l2=3"
    lines = sweep_verdict(children, ["val/loss"], ["model.l2"]).terminal_lines()  # what ablate prints
    assert lines[0] == "Verdict: l2=1 is best on val/loss, a tie with l2=3" and "a tie with the runner-up" in lines[1]
    assert lines[2] == "A tie: p >= 5%, so these seeds cannot tell the two apart (more seeds may)."


def test_where_another_validation_metric_picks_another_arm_the_terminal_and_the_parent_say_so() -> None:
    """val/acc (the verdict's metric) picks one arm, val/loss another: ablate's lines say both, and the parent run's
    tags name each metric's best arm beside its best/ metric."""
    children = sweep({0.0: [0.30, 0.31, 0.29], 0.5: [0.34, 0.35, 0.33]})
    for run, acc in zip(children, [0.90, 0.91, 0.90, 0.95, 0.96, 0.95], strict=True):
        run.metrics["val/acc"] = acc
    found = sweep_verdict(children, ["val/acc", "val/loss"], ["model.l2"])
    lines = found.terminal_lines()
    assert lines[0] == "Verdict: l2=0.5 is best on val/acc, ahead of l2=0 over seeds"
    assert lines[-1] == (
        "l2=0 is best on val/loss, ahead of l2=0.5 over seeds (where l2=0.5 is best on val/acc; the report has every "
        "metric's verdict)."
    )
    tags, best = found.tags(), found.best_metrics()
    assert (tags["lit_d2l.best_arm/val/acc"], tags["lit_d2l.best_arm/val/loss"]) == ("l2=0.5", "l2=0")
    assert best["best/val/loss"] == pytest.approx(0.30) and best["best/val/acc"] == pytest.approx(0.9533, abs=1e-4)
    agreeing = sweep_verdict(sweep({0.0: [0.3, 0.31, 0.29], 0.5: [0.34, 0.35, 0.33]}), ["val/loss"], ["model.l2"])
    assert not [line for line in agreeing.terminal_lines() if "(where " in line]


def test_a_best_arm_at_the_edge_of_a_one_key_grid_says_the_optimum_may_lie_beyond() -> None:
    """l2=10 wins a sweep of l2 in {0, 1, 10}: a larger value, never tried, may do better (D2L 3.6)."""
    edge = "l2=10 is the largest value tried: a larger one may do better (sweep beyond it)."
    found = sweep_verdict(
        sweep({0.0: [0.9, 0.8, 0.85], 1.0: [0.5, 0.4, 0.45], 10.0: [0.1, 0.2, 0.15]}), ["val/loss"], ["model.l2"]
    )
    assert edge in found.terminal_lines() and f"\n{edge}\n" in found.markdown()
    low = sweep_verdict(
        sweep({0.001: [0.1, 0.2, 0.15], 1.0: [0.5, 0.4, 0.45], 10.0: [0.9, 0.8, 0.85]}), ["val/loss"], ["model.l2"]
    )
    assert "l2=0.001 is the smallest value tried: a smaller one may do better" in low.markdown()
    inside = sweep_verdict(
        sweep({0.0: [0.9, 0.8, 0.85], 1.0: [0.1, 0.2, 0.15], 10.0: [0.5, 0.4, 0.45]}), ["val/loss"], ["model.l2"]
    )
    two = sweep_verdict(sweep({1.0: [0.9, 0.8, 0.85], 10.0: [0.1, 0.2, 0.15]}), ["val/loss"], ["model.l2"])
    assert not inside.at_edge and not two.at_edge, "inside the range, or only two values: nothing to say"
    widths = [child({"model.hidden_sizes": [w] * d}, 0, 0.1 * d) for w in (8, 16) for d in (1, 2, 3)]  # lists
    assert not sweep_verdict(widths, ["val/loss"], ["model.hidden_sizes"]).at_edge, "no order to be at the edge of"


def test_an_arm_with_a_diverged_seed_cannot_win() -> None:
    children = sweep({0.1: [0.50, 0.52, 0.51], 1.0: [0.20, 0.21, 0.22]})
    children.append(child({"model.l2": 10.0}, 0, 0.01))  # the lowest value of all, but its other seed diverged
    children.append(child({"model.l2": 10.0}, 1, None, diverged=True))
    children.append(child({"model.l2": 30.0}, 0, float("inf")))  # not diverged, yet no finite value
    result = verdict(children, "val/loss")
    assert result.best is not None and result.best.arm == "model.l2=1.0"
    assert result.excluded == [("l2=10", "1 seed(s) diverged"), ("l2=30", "no finite value on seed 0")]
    assert "out of the running: l2=10 (1 seed(s) diverged), l2=30 (no finite value on seed 0)" in result.text()


def test_an_arm_that_never_logged_the_metric_is_said_so_not_called_non_finite() -> None:
    """Say, a model of its own that logs no val/acc beside classifiers that do."""
    children = sweep({0.1: [0.5, 0.52], 1.0: [0.2, 0.21]}, "val/acc")
    children += [child({"model.l2": 3.0}, seed, None) for seed in (0, 1)]
    result = verdict(children, "val/acc")
    assert ("l2=3", "did not log it on seed 0, 1") in result.excluded
    assert "no finite value" not in result.text()


def test_every_arm_diverged_names_no_winner() -> None:
    children = [child({"model.lr": 10.0}, seed, None, diverged=True) for seed in range(2)]
    result = verdict(children, "val/loss")
    assert result.best is None and "none is best" in result.text()


def test_accuracy_is_maximised_and_one_seed_is_not_tested() -> None:
    children = sweep({0.0: [0.80], 1.0: [0.85]}, metric="val/acc")
    result = verdict(children, "val/acc")
    assert (goal("val/acc"), goal("train/loss_epoch"), goal("weight_norm/w")) == ("max", "min", None)
    assert result.best is not None and result.best.arm == "model.l2=1.0"
    assert result.comparison is not None and result.comparison.p_value is None
    assert "run more seeds" in result.text() and not result.tie


def test_a_two_key_grid_gives_the_best_per_group() -> None:
    values = {("relu", 0.1): 0.30, ("relu", 1.0): 0.20, ("tanh", 0.1): 0.10, ("tanh", 1.0): 0.40}
    children = [
        child({"model.activation": act, "model.init_std": std}, seed, value + 0.01 * seed)
        for (act, std), value in values.items()
        for seed in range(3)
    ]
    overall = verdict(children, "val/loss")
    assert overall.best is not None and overall.best.arm == 'model.activation="tanh";model.init_std=0.1'
    groups = verdicts_per_group(children, "val/loss", "model.activation")
    assert [(name, v.best.name if v.best else None) for name, v in groups] == [
        ("activation=relu", "relu σ=1"),
        ("activation=tanh", "tanh σ=0.1"),
    ]
    # Within a group the seeds move together (+0.01 per seed): a paired test sees a constant gap.
    assert all(v.comparison is not None and v.comparison.distinguishable for _, v in groups)
    found = sweep_verdict(children, ["val/loss"], ["model.activation", "model.init_std"])
    assert [name for name, _ in found.groups] == ["activation=relu", "activation=tanh"]


def test_listed_arms_are_grouped_only_by_a_key_every_arm_sets_and_several_share() -> None:
    """A key one listed arm alone sets (its schedule), or one whose every arm differs, makes no groups."""
    listed = [
        {"model.class_path": "MLP", "model.width": 8},
        {"model.class_path": "MLP", "model.width": 16, "lr_scheduler": "StepLR"},
        {"model.class_path": "CNN", "model.width": 32},
    ]
    children = [child(arm, seed, 0.1 * number + 0.01 * seed) for number, arm in enumerate(listed) for seed in (0, 1)]
    found = sweep_verdict(children, ["val/loss"], ["lr_scheduler", "model.class_path", "model.width"])
    assert [name for name, _ in found.groups] == ["class_path=CNN", "class_path=MLP"]
    assert not sweep_verdict(children, ["val/loss"], ["lr_scheduler", "model.width"]).groups


def test_a_verdict_names_three_arms_out_of_the_running_and_counts_the_rest() -> None:
    children = sweep({1.0: [0.2, 0.21]})
    children += [child({"model.l2": float(10 + i)}, 0, None, diverged=True) for i in range(5)]
    text = verdict(children, "val/loss").text()
    assert "out of the running: l2=10 (1 seed(s) diverged), l2=11" in text and "and 2 more (see the table)" in text


def test_a_metric_no_run_logged_is_named_as_such_with_what_the_runs_did_log() -> None:
    """A misspelt metric in the spec (`val/los`) is not a verdict of 'no metric says which way is better'."""
    children = sweep({1.0: [0.10, 0.12, 0.11], 3.0: [0.30, 0.33, 0.31]})
    found = sweep_verdict(children, ["val/loss", "val/los"], ["model.l2"])
    assert found.unlogged == ["val/los"]
    text = found.markdown()
    assert "- `val/los`: no run logged this metric" in text and "they logged `val/loss`" in text
    lines = found.terminal_lines()  # what ablate prints
    assert text.startswith(f"## {lines[0]}\n")
    assert lines[0] == "Verdict: l2=1 is best on val/loss, ahead of l2=3 over seeds"
    assert lines[1] == (  # why: both means, the test and its p-value
        "val/loss (lowest is best): l2=1, 0.11 ± 0.0082 over 3 seeds; better than the runner-up l2=3 "
        "(0.3133 ± 0.012 over 3 seeds; paired t-test over seeds 0, 1, 2, p = 0.00027)."
    )
    assert lines[2].startswith("val/los: no run logged this metric (check its name in the spec's metrics:;")


def test_with_no_value_of_the_metric_the_verdict_says_so_not_that_arms_diverged() -> None:
    """E.g. trainer.max_epochs below trainer.check_val_every_n_epoch: no validation ran, so no run has val/loss."""
    children = [child({"model.l2": l2}, seed, None) for l2 in (0.0, 3.0) for seed in (0, 1)]
    found = sweep_verdict(children, ["val/loss"], ["model.l2"])
    assert found.headline() == "Verdict: no arm is best on val/loss: no run has a finite value of it"
    assert found.verdicts[0].text().startswith("`val/loss`: no run has a finite value of it, so none is best.")
    assert "check_val_every_n_epoch" in found.terminal_lines()[1]
    children[0] = child({"model.l2": 0.0}, 0, None, diverged=True)
    assert verdict(children, "val/loss").why_none == "every arm diverged or has no finite value of it"
    # a report made before any run has finished (a sweep that has just started): nothing diverged
    assert sweep_verdict([], ["val/loss"], ["model.l2"]).headline() == (
        "Verdict: no arm is best on val/loss: no run has finished yet"
    )


def test_with_a_penalty_in_some_arms_the_objective_is_not_ranked_across_them() -> None:
    """J = L + λ/2·Σ‖W‖² differs by λ: ranking train/loss_epoch would name the unpenalised arm best by definition."""
    children = sweep({0.0: [0.9, 1.0], 3.0: [0.3, 0.35]})
    for c in children:
        l2 = json.loads(c.tags["arm_settings"])["model.l2"]
        c.metrics |= {"train/loss_epoch": 0.1 + l2, **({"train/loss_data": 0.2} if l2 else {})}
    found = sweep_verdict(children, ["val/loss", "train/loss_epoch"], ["model.l2"])
    assert [v.metric for v in found.verdicts] == ["val/loss"]
    without_penalty = sweep_verdict(
        sweep({0.0: [0.9, 1.0], 1.0: [0.3, 0.35]}, "train/loss_epoch"), ["train/loss_epoch"], []
    )
    assert [v.metric for v in without_penalty.verdicts] == ["train/loss_epoch"]


def test_means_that_would_print_alike_get_the_digits_that_tell_them_apart() -> None:
    """Seeds move both arms alike, so a paired test separates means 0.05% apart; at 4 digits both read 2.243."""
    children = sweep({1.0: [2.2400, 2.2500, 2.2384], 3.0: [2.2404, 2.2505, 2.2387]})
    text = verdict(children, "val/loss").text()
    assert "**l2=1**, 2.2428 ± 0.0051 over 3 seeds; better than the runner-up l2=3 (2.2432 ± 0.0052" in text, text
