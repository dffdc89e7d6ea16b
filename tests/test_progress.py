"""Progress lines of cv and ablate: one per finished unit, elapsed time, ETA, and a tally at the end."""

from __future__ import annotations

from collections import Counter

from lit_d2l.progress import Progress, clock_time, tally


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
