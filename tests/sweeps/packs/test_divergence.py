"""One arm of a pack diverges: it is recorded diverged at the step it would diverge alone, and frozen;
every other arm ends exactly as it ends alone."""

from __future__ import annotations

import pytest
import torch

from lit_d2l.callbacks import Diverged, DivergenceGuard
from lit_d2l.fit.run import build
from lit_d2l.sweeps.packs.fit import build_arm, fit_pack
from tests.sweeps.packs.memory_logger import MemoryLogger
from tests.sweeps.packs.test_equality import LINEAR, fit_args, seeded

BOUND = 1e3
ARMS = [
    ["--model.lr", "0.03", *seeded(0)],
    ["--model.lr", "3.0", *seeded(1)],  # far past 2/λ_max of the squared loss: grows ~3x a step
    ["--model.lr", "0.01", "--model.l2", "0.1", *seeded(2)],
]


def test_the_diverging_arm_stops_at_its_own_step_and_the_others_are_untouched() -> None:
    arms = [build_arm(fit_args(LINEAR, settings)) for settings in ARMS]
    for arm in arms:
        arm.logger = MemoryLogger()
    results = fit_pack(arms, max_grad_norm=BOUND)
    assert [r.outcome for r in results] == ["finished", "diverged", "finished"]

    with pytest.raises(Diverged) as alone:
        cli = build("fit", fit_args(LINEAR, ARMS[1]), callbacks=[DivergenceGuard(max_grad_norm=BOUND)])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    step = alone.value.step
    assert step > 0 and results[1].diverged_at_step == step
    diverged = arms[1].logger
    assert diverged.tags["outcome"] == "diverged" and diverged.tags["diverged_at_step"] == step
    assert diverged.status == "FINISHED"  # a result, not a crash
    assert max(diverged.metrics["train/loss"]) < step  # nothing recorded from its divergence on
    assert torch.isfinite(torch.cat([p.flatten() for p in arms[1].model.parameters()])).all()  # frozen

    for index in (0, 2):
        cli = build("fit", fit_args(LINEAR, ARMS[index]))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        alone_params = dict(cli.model.named_parameters())
        for name, value in arms[index].model.named_parameters():
            torch.testing.assert_close(value, alone_params[name], rtol=1e-5, atol=1e-5)
        assert "outcome" not in arms[index].logger.tags
