"""Progress lines of cv and ablate: one per finished unit, elapsed time, ETA, and a tally at the end."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from lit_d2l.processes.terminal import clock_time
from lit_d2l.sweeps.progress import Progress, tally


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_report_is_one_line_with_elapsed_time_and_eta() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = Progress("arm", 4, lines.append, clock)
    clock.now += 30
    progress.report("model.l2=0.0 seed 0", "finished", "val/loss=0.5")
    clock.now += 30
    progress.report("model.l2=3.0 seed 0", "diverged")
    clock.now += 3600
    progress.report("", "failed", "ValueError: bad")
    assert lines == [
        "arm 1/4 model.l2=0.0 seed 0: finished val/loss=0.5 (elapsed 0:30, ETA 1:30)",
        "arm 2/4 model.l2=3.0 seed 0: diverged (elapsed 1:00, ETA 1:00)",
        "arm 3/4: failed ValueError: bad (elapsed 1:01:00, ETA 20:20)",
    ]
    assert progress.summary() == "3 arms in 1:01:00: 1 finished, 1 diverged, 1 failed, 0 skipped"


def test_tally_counts_every_outcome_zeros_included() -> None:
    assert tally(Counter()) == "0 finished, 0 diverged, 0 failed, 0 skipped"
    assert tally(Counter(skipped=2, odd=1)) == "0 finished, 0 diverged, 0 failed, 2 skipped, 1 odd"


def test_clock_time() -> None:
    assert [clock_time(s) for s in (0, 59.4, 61, 3599, 3600, 36061)] == [
        "0:00",
        "0:59",
        "1:01",
        "59:59",
        "1:00:00",
        "10:01:01",
    ]


def test_the_eta_is_weighted_by_work_not_by_finished_units() -> None:
    lines: list[str] = []
    clock = Clock()
    # Three small units (10 steps each) then one large one (970 steps): a per-unit ETA would say 0:30 left.
    progress = Progress("arm", 4, lines.append, clock, work=1000)
    for _ in range(3):
        clock.now += 1
        progress.report("", "finished", work=10)
    assert lines[-1] == "arm 3/4: finished (elapsed 0:03, ETA 1:37)"  # 3 s for 30 steps: 97 s for 970
    clock.now += 97
    progress.report("", "finished", work=970)
    assert lines[-1] == "arm 4/4: finished (elapsed 1:40, ETA 0:00)"


def test_units_that_end_together_show_one_eta() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = Progress("arm", 4, lines.append, clock, work=40)
    clock.now += 10
    progress.credit(20, units=2)  # a pack of two arms, 10 steps each
    for _ in range(2):
        progress.report("", "finished", work=0)
    assert [line.split("(")[1] for line in lines] == ["elapsed 0:10, ETA 0:10)"] * 2


def test_a_pairs_expected_steps_are_its_epochs_times_its_batches() -> None:
    from lit_d2l.sweeps.engine import expected_steps

    def parsed(num_train: int | None, batch_size: int, **trainer) -> SimpleNamespace:
        return SimpleNamespace(
            trainer_kwargs=trainer, datamodule=SimpleNamespace(num_train=num_train, batch_size=batch_size)
        )

    assert expected_steps(parsed(1000, 10, max_epochs=400)) == 400 * 100
    assert expected_steps(parsed(2, 10, max_epochs=400)) == 400  # one (short) batch an epoch
    assert expected_steps(parsed(1000, 10, max_epochs=400, max_steps=500)) == 500
    assert expected_steps(parsed(1000, 10, max_epochs=400, limit_train_batches=5)) == 400 * 5
    assert expected_steps(parsed(None, 10, max_epochs=7)) == 7  # no num_train: the epochs still weigh
    assert expected_steps(parsed(100, 10)) == 1000 * 10  # Lightning's default: 1,000 epochs


def test_a_sweeps_start_line_says_what_it_runs_where_and_how_to_stop_and_resume() -> None:
    from lit_d2l.sweeps.engine import start_line
    from lit_d2l.sweeps.packs.plan import Pack

    plan = SimpleNamespace(
        spec=SimpleNamespace(sweep_id="overfitting-1a2b"),
        parent=SimpleNamespace(run_id="abc123"),
        tasks=[object()] * 7,
        skipped=2,
    )
    units = [Pack([1, 2, 3]), Pack([4, 5, 6]), Pack([7])]
    assert start_line(plan, units, "2 workers") == (
        "sweep overfitting-1a2b: 7 runs to train (2 done before) as 2 packs, 1 single fit on 2 workers; "
        "parent run abc123. Ctrl-C stops; run it again to resume"
    )
    plan.tasks = []  # a finished sweep run again
    assert start_line(plan, [], "2 workers") == (
        "sweep overfitting-1a2b: nothing left to train here (2 done before); parent run abc123"
    )


def test_a_heartbeat_comes_at_an_epochs_end_at_most_every_30_s() -> None:
    from lit_d2l.callbacks import Heartbeat

    lines: list[str] = []
    clock = Clock()
    beat = Heartbeat("pack 2/5 (12 arms)", echo=lines.append, clock=clock)
    trainer = SimpleNamespace(max_epochs=400, current_epoch=0, is_global_zero=True)
    beat.on_train_start(trainer, None)
    for epoch in range(100):  # 1 s an epoch
        clock.now += 1
        trainer.current_epoch = epoch
        beat.on_train_epoch_end(trainer, None)
    assert lines == [
        "pack 2/5 (12 arms): epoch 30/400, elapsed 0:30",
        "pack 2/5 (12 arms): epoch 60/400, elapsed 1:00",
        "pack 2/5 (12 arms): epoch 90/400, elapsed 1:30",
    ]


def test_a_heartbeat_shows_the_latest_values_it_is_asked_for() -> None:
    import torch

    from lit_d2l.callbacks import Heartbeat

    lines: list[str] = []
    clock = Clock()
    beat = Heartbeat("training", echo=lines.append, clock=clock, show=("train/loss", "val/loss", "val/acc"))
    metrics = {"train/loss": torch.tensor(0.03125), "val/acc": torch.ones(3)}  # no val/loss yet; not a scalar
    trainer = SimpleNamespace(max_epochs=-1, current_epoch=0, is_global_zero=True, callback_metrics=metrics)
    beat.on_train_start(trainer, None)
    clock.now += 45
    beat.on_train_epoch_end(trainer, None)
    assert lines == ["training: epoch 1, elapsed 0:45, train/loss = 0.03125"]


def test_a_heartbeat_pickles_as_ddp_spawn_pickles_the_callbacks() -> None:
    import pickle

    from lit_d2l.callbacks import Heartbeat

    beat = pickle.loads(pickle.dumps(Heartbeat("training", show=("train/loss",))))
    assert beat.label == "training" and beat.show == ("train/loss",)


def test_the_eta_counts_each_units_fixed_cost_beside_its_work() -> None:
    """Each unit costs 2 s of setup plus 0.01 s a step. Small units first: a rate per step alone (the work's
    share of the time) would say 1:33 are left after the first two; the fit of both costs is exact (0:26)."""
    lines: list[str] = []
    clock = Clock()
    sizes = [10, 100, 1000, 1000, 10]
    progress = Progress("arm", len(sizes), lines.append, clock, work=sum(sizes))
    for size in sizes[:2]:
        clock.now += 2 + 0.01 * size
        progress.report("", "finished", work=size)
    left = 3 * 2 + 0.01 * (1000 + 1000 + 10)  # 26.1 s
    assert progress.eta() == pytest.approx(left)
    assert lines[-1].endswith("ETA 0:26)")
    clock.now += 2 + 0.01 * 1000
    progress.report("", "finished", work=1000)
    assert progress.eta() == pytest.approx(2 * 2 + 0.01 * 1010)
