"""Model selection (D2L 3.6.3): choose a sweep's arm by its mean validation metric over seeds, then test it once.

The test split estimates how the chosen model does on new data only if nothing was chosen by it, so the
test is run for the selected arm alone, once per sweep, and recorded on the parent run; a second
``--test`` is refused and repeats the recorded result.

Sweeps keep no checkpoints, so the selected arm is trained again: the sweep's run of that arm with the
best value of the metric (its seed), from that run's own ``config.yaml``, with ``test_after_fit``. Same
config, same seed, same data: the same weights (on a CPU to the last bit; the validation metric is
printed beside the one the sweep recorded, so any difference shows). The test run is a child of the
parent, tagged ``lit_d2l.kind=selection-test``; the parent gets its ``test/*`` metrics, tags
``lit_d2l.selection.*`` and ``selection.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lit_d2l.errors import NoTestSplit, UserError
from lit_d2l.processes.quiet import lightning_info_off
from lit_d2l.sweeps.reports.report import one_run_per_pair, runs_left
from lit_d2l.sweeps.reports.verdict import arm_results, goal
from lit_d2l.tracking.sweeps import Child, SweepStore

SELECTION_TAG = "lit_d2l.selection"


@dataclass
class Selection:
    """The chosen arm and every candidate's mean (best first)."""

    metric: str
    mode: str  # "min" or "max"
    ranking: list[tuple[str, float, list[Child]]]  # (arm, mean over seeds, its runs)

    @property
    def arm(self) -> str:
        return self.ranking[0][0]

    @property
    def runs(self) -> list[Child]:
        return self.ranking[0][2]

    def best_run(self) -> Child:
        """The selected arm's run with the best value of the metric (the seed to train again for the test)."""
        pick = min if self.mode == "min" else max
        return pick(self.runs, key=lambda c: (c.metrics[self.metric], c.seed))

    def markdown(self) -> str:
        better = "lowest" if self.mode == "min" else "highest"
        lines = [f"Selected by the {better} mean `{self.metric}` over seeds: **{self.arm}**", ""]
        lines += [f"| rank | arm | seeds | mean {self.metric} |", "| --- | --- | --- | --- |"]
        lines += [f"| {i} | {arm} | {len(runs)} | {mean:.4g} |" for i, (arm, mean, runs) in enumerate(self.ranking, 1)]
        return "\n".join(lines) + "\n"


def direction(metric: str, mode: str | None = None) -> str:
    """``mode`` if given, else "min" for a loss and "max" for an accuracy; a test metric is refused."""
    refuse_test_metric(metric)
    if mode is not None:
        return mode
    known = goal(metric)
    if known is None:
        raise UserError(f"cannot tell whether a lower or a higher {metric} is better: give --mode min or --mode max")
    return known


def refuse_test_metric(metric: str) -> None:
    if metric.startswith("test/"):
        raise UserError(
            f"select by a validation metric (e.g. val/loss), not {metric}: the test split is for the selected arm "
            "only, once (--test)"
        )


def select_arm(children: list[Child], metric: str, mode: str | None = None) -> Selection:
    """Rank the arms whose every finished seed has a finite ``metric`` (an arm that diverged on a seed is out)."""
    mode = direction(metric, mode)
    kept, _ = one_run_per_pair(children)
    ranked, _ = arm_results(kept, metric, mode)
    if not ranked:
        raise UserError(f"no arm of this sweep logged {metric} on every seed: pick a metric the sweep recorded")
    return Selection(metric, mode, [(r.arm, r.mean, list(r.runs)) for r in ranked])


def select_command(
    sweep: str, metric: str, mode: str | None, test: bool, tracking_uri: str | None, register: str | None = None
) -> int:
    """Print the selection; with ``test``, test the selected arm once and record it on the parent run (its model
    registered as ``register`` when given)."""
    store = SweepStore(tracking_uri)
    parent = store.resolve_parent(sweep)
    children = store.children(parent)
    selection = select_arm(children, metric, mode)
    print(selection.markdown())
    left = runs_left(parent, len(one_run_per_pair(children)[0])) if test else ""
    if left:  # the test split is used once: on the choice among every run, not among those done so far
        raise UserError(f"{left}: test the selected arm once it has")
    if test:
        test_selected(store, parent.info.run_id, parent.info.experiment_id, selection, register)
    return 0


def test_selected(
    store: SweepStore, parent_id: str, experiment_id: str, selection: Selection, register: str | None = None
) -> dict[str, float]:
    """Train the selected arm's best run again with ``test_after_fit``, once per sweep; returns its test metrics.

    The test run logs its trained model (``runs:/<test run>/model``), registered as ``register`` when given; a
    sweep tested before has its test run's model registered, and is not tested again.
    """
    from lit_d2l.fit.run import run_configured
    from lit_d2l.sweeps.engine import QUIET_TRAINER  # torch and Lightning: only to train
    from lit_d2l.tracking.models import register_run_model
    from lit_d2l.tracking.run_record import CONFIG_ARTIFACT

    done = [c for c in store.selection_tests(parent_id, experiment_id) if c.status == "FINISHED"]
    if done and register is not None:
        registered = register_run_model(store.client, done[0].run_id, register)
        print(f"the selected arm was tested once, in run {done[0].run_id}: its model is registered as {registered}")
        return {k: v for k, v in done[0].metrics.items() if k.startswith("test/")}
    if done:
        raise UserError(_already_tested(done[0]))
    run = selection.best_run()
    config = store.download(run.run_id, CONFIG_ARTIFACT)
    tags = {"arm": run.arm, "seed": str(run.seed), f"{SELECTION_TAG}.metric": selection.metric}
    test_id, taken = store.claim_selection_test(parent_id, experiment_id, f"test/{run.arm}/seed={run.seed}"[:240], tags)
    if test_id is None:
        raise UserError(f"the selected arm is already tested or being tested: {taken}")
    uri = store.tracking_uri
    where = ["--tracking.uri", uri, "--tracking.experiment", store.client.get_experiment(experiment_id).name]
    args = ["--config", str(config), *QUIET_TRAINER, "--test_after_fit", "true", *where, "--tracking.run_id", test_id]
    args += ["--tracking.log_model", "true", *(["--tracking.register_model", register] if register else [])]
    try:
        with lightning_info_off():
            result = run_configured("fit", args)
    except NoTestSplit:  # as the sweep's runs had it; report takes no run settings
        store.client.delete_run(test_id)
        raise UserError(
            f"arm {run.arm} has no test split (data.num_test 0): give data.num_test in the spec's overrides:, "
            "run the sweep again, then select and test"
        ) from None
    except UserError:  # another bad setting: nothing was tested
        store.client.delete_run(test_id)
        raise
    except BaseException:
        store.end_if_running(test_id, "FAILED")
        raise
    assert result is not None
    tested = {k: v for k, v in result.metrics.items() if k.startswith("test/")}
    if result.outcome == "diverged" or not tested:
        raise UserError(f"training arm {run.arm} seed {run.seed} again did not reach the test (run {test_id})")
    recorded, again = run.metrics[selection.metric], result.metrics.get(selection.metric, math.nan)
    summary = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(tested.items()))
    text = selection.markdown() + (
        f"\nTested once: seed {run.seed} (run `{run.run_id}`) trained again in run `{test_id}`: {summary}; "
        f"its {selection.metric} = {again:.4g} (the sweep recorded {recorded:.4g}).\n"
    )
    selected = {"metric": selection.metric, "mode": selection.mode, "arm": run.arm, "seed": str(run.seed)}
    marks = {f"{SELECTION_TAG}.{key}": value for key, value in {**selected, "test_run": test_id}.items()}
    store.record(parent_id, tested, marks, (text, "selection.md"))
    print(f"retrained {run.arm} seed {run.seed}: {selection.metric} = {again:.4g} (the sweep recorded {recorded:.4g})")
    print(f"tested once in run {test_id}: {summary} (recorded on the parent run {parent_id})")
    if result.model_uri:
        registered = f", registered as {result.registered}" if result.registered else ""
        print(f"its model: {result.model_uri}{registered}")
    return tested


def _already_tested(test: Child) -> str:
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(test.metrics.items()) if k.startswith("test/"))
    return (
        f"this sweep's selected arm was already tested, once: {test.arm} seed {test.seed} in run {test.run_id} "
        f"({shown or 'no test metrics'}); the test split is used once, so that result stands"
    )
