"""Which arms share a pack: only those differing in packable settings, within the memory budget."""

from __future__ import annotations

from typing import Any

from lit_d2l.sweeps.packs.plan import plan_packs, signature
from tests.conftest import REPO

INIT = str(REPO / "experiments" / "init_classification.yaml")
SCRATCH = str(REPO / "experiments" / "linear_regression.yaml")


def arms(*settings: dict[str, Any], config: str = INIT) -> list[dict[str, Any]]:
    return [{"settings": s, "args": ["--config", config, *(f"--{k}={v}" for k, v in s.items())]} for s in settings]


def plan(units: list[dict[str, Any]], **kwargs: Any) -> list[list[dict[str, Any]]]:
    packs = plan_packs(units, lambda u: u["settings"], lambda u: u["args"], **kwargs)
    return [[units.index(u) for u in pack.units] for pack in packs]


def test_packable_settings_share_a_pack_and_shapes_do_not() -> None:
    units = arms(
        {"model.lr": 0.1, "seed_everything": 0, "model.depth": 2},
        {"model.lr": 0.3, "seed_everything": 1, "model.depth": 2, "model.init": "kaiming"},
        {"model.lr": 0.1, "seed_everything": 0, "model.depth": 3},  # deeper: another architecture
        {"model.lr": 0.1, "seed_everything": 0, "model.depth": 2, "model.activation": "tanh"},
        {"model.lr": 0.2, "seed_everything": 2, "model.depth": 2, "model.l2": 0.01, "model.momentum": 0.9},
    )
    assert plan(units, budget=10**12) == [[0, 1, 4], [2], [3]]


def test_dropout_on_and_off_are_different_architectures() -> None:
    assert signature({"model.dropout": 0.2}) == signature({"model.dropout": 0.5})
    assert signature({"model.dropout": 0.0}) != signature({"model.dropout": 0.5})


def test_the_memory_budget_and_pack_size_cut_packs_and_workers_each_get_one() -> None:
    units = arms(*({"model.lr": 0.1, "seed_everything": seed} for seed in range(6)))
    assert plan(units, budget=10**12) == [[0, 1, 2, 3, 4, 5]]
    assert plan(units, budget=10**12, max_arms=4) == [[0, 1, 2, 3], [4, 5]]
    assert plan(units, budget=10**12, workers=2) == [[0, 1, 2], [3, 4, 5]]
    # ~300 kB an arm (2,500 examples x 21 floats of data, 2k parameters x 4, a batch of activations).
    assert plan(units, budget=700_000) == [[0, 1], [2, 3], [4, 5]]
    assert plan(units, budget=1) == [[0], [1], [2], [3], [4], [5]]
    assert plan([], budget=10**12, workers=2) == []  # a finished sweep run again with --workers 2


def test_a_model_a_pack_cannot_train_runs_alone_with_the_reason() -> None:
    units = arms(*({"model.lr": lr} for lr in (0.1, 0.2)), config=SCRATCH)
    units += arms(*({"model.lr": lr, "optimizer": "Adam"} for lr in (0.1, 0.2)))  # Adam packs
    units += arms(*({"optimizer": "Adam", "optimizer.lr": lr, "optimizer.amsgrad": True} for lr in (0.1, 0.2)))
    units += arms(*({"model.lr": lr, "lr_scheduler": "ExponentialLR", "lr_scheduler.gamma": 0.9} for lr in (0.1, 0.2)))
    packs = plan_packs(units, lambda u: u["settings"], lambda u: u["args"], budget=10**12)
    assert [len(p.units) for p in packs] == [2, 2, 1, 1, 1, 1]
    assert "amsgrad" in packs[2].reason and "ExponentialLR" in packs[4].reason


OWN = "tests.sweeps.packs.own_models"


def test_a_users_own_subclass_packs_and_one_with_its_own_training_runs_alone_saying_why() -> None:
    """Packability is a capability: the user's own D2LModule subclass (in their own package) packs; one
    whose training step or layers a pack cannot run trains alone, and the plan says why."""
    lrs = ({"model.lr": lr} for lr in (0.1, 0.2))
    own = [*arms(*lrs)]
    for unit in own:
        unit["args"] += ["--model", f"{OWN}.ResidualMLP"]
    packs = plan_packs(own, lambda u: u["settings"], lambda u: u["args"], budget=10**12)
    assert [len(p.units) for p in packs] == [2]
    lenet = arms(*({"model.lr": lr} for lr in (0.1, 0.2)))  # convolution and pooling pack too (D2L 7.6)
    for unit in lenet:
        unit["args"] += ["--model", "lit_d2l.models.LeNet", "--data.num_inputs", "784"]
    assert [len(p.units) for p in plan_packs(lenet, lambda u: u["settings"], lambda u: u["args"], budget=10**12)] == [2]
    for model, why in (
        ("OwnStepMLP", "defines its own training_step"),
        ("NormalisedMLP", "running statistics"),
        ("AdamMLP", "default_optimizer is Adam"),
        # The plan tries one vectorized step of two copies: dropout written as a function (each arm's masks would
        # come from one stream, not its own), a dropout module called twice, a forward that branches on a value.
        ("FunctionalDropoutMLP", "forward draws random numbers outside its dropout modules"),
        ("TwiceDropoutMLP", "forward calls a dropout module more than once"),
        ("BranchingMLP", "forward branches on a tensor's value"),
        ("ItemMLP", "forward reads a tensor's value as a Python number (.item()"),
        # with dropout, a forward on the meta device runs first (to find the dropout calls): the read fails there
        ("BranchingMLP --model.dropout 0.3", "forward reads a tensor's value as a Python number"),
        ("ItemMLP --model.dropout 0.3", "forward reads a tensor's value as a Python number (.item()"),
        ("MixedPrecisionMLP", "parameters do not share one dtype"),  # a pack holds them in one tensor
        ("BrokenMLP", "fails on two training examples even alone, as its fit will: shape '[-1, 7]' is invalid"),
    ):
        model, *settings = model.split()
        units = arms(*({"model.lr": lr} for lr in (0.1, 0.2)))
        for unit in units:
            unit["args"] += ["--model", f"{OWN}.{model}", *settings]
        packs = plan_packs(units, lambda u: u["settings"], lambda u: u["args"], budget=10**12)
        assert [len(p.units) for p in packs] == [1, 1], model
        assert why in packs[0].reason and model in packs[0].reason, packs[0].reason
