"""Child runs named for MLflow's runs table: short, unique, with the swept values as top-level params."""

from __future__ import annotations

from lit_d2l.sweeps.arm_values import short_keys, short_name, swept_params, unique_short_names


def test_names_are_short_with_text_values_alone_and_numbers_keyed() -> None:
    arm = {"model.init": "normal", "model.init_std": 1.0, "model.activation": "tanh", "model.depth": 30}
    assert short_name(arm) == "normal σ=1 tanh depth=30"
    assert short_name({"model.l2": 3.0}) == "l2=3" and short_name({"model.lr": 1e-5}) == "lr=1e-05"
    assert short_name({"model.hidden_sizes": [16, 16]}) == "hidden_sizes=[16, 16]"
    assert short_name({}) == "base"


def test_names_are_unique_within_a_sweep() -> None:
    arms = [{"model.init": "normal"}, {"data.init": "normal"}, {"model.lr": 0.1}, {"model.lr": 0.1000001}]
    assert unique_short_names(arms) == ["model.init=normal", "data.init=normal", "model.lr=0.1", "model.lr=0.1000001"]
    assert unique_short_names([{"model.l2": 0.0}, {"model.l2": 3.0}]) == ["l2=0", "l2=3"]


def test_two_swept_keys_with_one_last_part_keep_enough_of_the_key_to_tell_them_apart() -> None:
    """``optimizer.lr`` and ``model.lr`` in one arm were both ``lr``: ``lr=0.1 lr=0.01`` named neither."""
    assert short_name({"optimizer.lr": 0.1, "model.lr": 0.01}) == "optimizer.lr=0.1 model.lr=0.01"
    arm = {"model.init": "normal", "data.init": "uniform", "model.init_std": 0.5}  # text keyed when ambiguous
    assert short_name(arm) == "model.init=normal data.init=uniform σ=0.5"
    assert short_keys(["model.a.lr", "model.b.lr", "optimizer"]) == {
        "model.a.lr": "a.lr",
        "model.b.lr": "b.lr",
        "optimizer": "optimizer",
    }
    grid = [{"optimizer.lr": o, "model.lr": m} for o, m in ((0.1, 0.01), (0.01, 0.1))]
    assert unique_short_names(grid) == ["optimizer.lr=0.1 model.lr=0.01", "optimizer.lr=0.01 model.lr=0.1"]


def test_swept_values_become_top_level_params() -> None:
    assert swept_params({"model.l2": 3.0, "model.activation": "tanh"}) == {"l2": "3.0", "activation": "tanh"}
    assert swept_params({"model.init": "normal", "data.init": 2}) == {"model_init": "normal", "data_init": "2"}
