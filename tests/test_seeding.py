"""Each random stream of a run has its own seed: data, initialisation and batch order never draw the same numbers."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_d2l.data import HighDimLinearData
from lit_d2l.models import LinearRegressionScratch
from lit_d2l.seeding import STREAMS, derive_seed


class InitialState(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.w = pl_module.w.detach().clone().reshape(-1)
        self.X = trainer.datamodule.splits["train"][0].clone()


def fit(seed: int, quiet_trainer: dict, **model_args) -> tuple[InitialState, LinearRegressionScratch]:
    """A sweep's arm: seed_everything and data.seed both set to the arm's seed."""
    L.seed_everything(seed, verbose=False)
    state, model = InitialState(), LinearRegressionScratch(lr=0.01, **model_args)
    trainer = L.Trainer(max_epochs=2, logger=False, callbacks=[state], num_sanity_val_steps=0, **quiet_trainer)
    trainer.fit(model, HighDimLinearData(seed=seed))
    return state, model


def test_derived_seeds_differ_by_stream_and_by_seed_and_are_stable() -> None:
    seeds = {(seed, stream): derive_seed(seed, stream) for seed in range(5) for stream in STREAMS}
    assert len(set(seeds.values())) == len(seeds)
    assert derive_seed(3, "data") == derive_seed(3, "data")
    assert all(0 <= value < 2**32 for value in seeds.values())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_initial_weights_are_uncorrelated_with_the_training_data(seed: int, quiet_trainer: dict) -> None:
    state, _ = fit(seed, quiet_trainer)
    cosines = torch.nn.functional.cosine_similarity(state.X, state.w.expand_as(state.X), dim=1)
    assert cosines.abs().max() < 0.3, cosines.abs().max()


def test_the_same_seed_gives_the_same_run_and_another_seed_another(quiet_trainer: dict) -> None:
    (first, model), (again, model_again), (other, _) = (fit(s, quiet_trainer) for s in (5, 5, 6))
    assert torch.equal(first.w, again.w) and torch.equal(first.X, again.X)
    assert torch.equal(model.w, model_again.w), "same batches in the same order, same updates"
    assert not torch.equal(first.w, other.w) and not torch.equal(first.X, other.X)


def test_a_pinned_initialisation_stays_while_the_run_seed_changes(quiet_trainer: dict) -> None:
    (one, _), (two, _) = (fit(s, quiet_trainer, init_seed=7) for s in (1, 2))
    assert torch.equal(one.w, two.w)
    assert not torch.equal(one.X, two.X)
