"""Dropout in a pack: each arm draws its masks from its own stream, as its solo fit does (D2L 5.6)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.func import functional_call

from lit_d2l.fit.run import run_configured
from lit_d2l.models import MLP
from lit_d2l.models.mlp import DropoutScratch
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.packs.module import ArmDropout, PackedModule
from lit_d2l.sweeps.spec import load_spec


def packed(arms: list[MLP], seeds: tuple[int, ...]) -> PackedModule:
    """The arms built for 6 inputs and 3 classes, packed in training mode, each drawing from its seed's stream."""
    for arm in arms:
        arm.num_inputs, arm.num_outputs = 6, 3
        arm.build()
    streams = []
    for seed in seeds:
        torch.manual_seed(seed)
        streams.append((torch.get_rng_state(), seed))
    return PackedModule(arms, rng_states=streams).train()


def test_arm_dropout_applies_its_given_mask_and_is_the_identity_in_evaluation() -> None:
    x, mask = torch.randn(3, 5), torch.tensor([0.0, 2.0, 0.0, 2.0, 2.0])
    assert torch.equal(functional_call(ArmDropout().train(), {"mask": mask}, (x,)), x * mask)
    assert torch.equal(functional_call(ArmDropout().eval(), {"mask": mask}, (x,)), x)


def test_each_arm_draws_the_masks_its_own_dropout_draws_from_its_own_stream() -> None:
    arms = [MLP(hidden_sizes=[8, 8], dropout=p, dropout_impl=impl) for p, impl in ((0.3, "torch"), (0.6, "scratch"))]
    module = packed(arms, seeds=(5, 7))
    x = torch.randn(2, 4, 6)
    masks = module.arm_masks([x])
    for arm, (seed, model) in enumerate(zip((5, 7), arms, strict=True)):
        torch.manual_seed(seed)  # what this arm's own dropouts draw, alone, from its seed
        dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout | DropoutScratch)]
        alone = [d(torch.ones(4, 8)) for d in dropouts]
        for path, expected in zip(module.dropout_paths, alone, strict=True):
            assert torch.equal(masks[f"{path}.mask"][arm], expected), (arm, path)
    second = module.arm_masks([x])  # the streams go on: the next step draws new masks
    assert not torch.equal(second[f"{module.dropout_paths[0]}.mask"], masks[f"{module.dropout_paths[0]}.mask"])
    assert module.arm_masks([x]) != {} and module.eval().arm_masks([x]) == {}


def test_a_packs_state_keeps_each_arms_stream_so_a_restored_pack_draws_the_same_masks() -> None:
    def pack() -> PackedModule:
        torch.manual_seed(0)  # the same initial weights each time
        return packed([MLP(hidden_sizes=[8], dropout=p) for p in (0.2, 0.7)], seeds=(3, 4))

    x = torch.randn(2, 4, 6)
    first = pack()
    first.arm_masks([x])  # one step taken
    state = first.state_dict()
    assert {"arm_rng_cpu"} <= state.keys()
    restored = pack()
    restored.load_state_dict(state)
    expected, got = first.arm_masks([x]), restored.arm_masks([x])
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


BASE = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 3, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1},
    "model": {
        "class_path": "lit_d2l.models.MLP",
        "init_args": {"hidden_sizes": [32, 32], "activation": "relu", "init": "kaiming", "lr": 0.1},
    },
    "data": {"class_path": "lit_d2l.data.Digits", "init_args": {"batch_size": 16, "num_train": 64}},
    "test_after_fit": False,
}


@pytest.mark.slow
def test_a_packed_dropout_arm_equals_the_solo_fit_of_its_recorded_config(tmp_path, tracking_uri, client, experiment):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    spec = {
        "name": experiment,
        "base": str(base),
        # one pack of 4 arms (p 0.3 and 0.5, seeds 1 and 2) with nn.Dropout, one of 2 with DropoutScratch
        "arms": [
            {"model.dropout": 0.3},
            {"model.dropout": 0.5},
            {"model.dropout": 0.5, "model.dropout_impl": "scratch"},
        ],
        "seeds": [1, 2],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    exp = client.get_experiment_by_name(experiment)
    children = client.search_runs([exp.experiment_id], "tags.arm != ''")
    assert len(children) == 6
    for run in children:
        assert int(run.data.tags["lit_d2l.packed_arms"]) >= 2, run.data.tags  # it trained packed
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / run.info.run_id)))
        assert yaml.safe_load(config.read_text())["tracking"]["run_id"] is None  # a run of its own, not the arm's
        args = ["--config", str(config), "--tracking.uri", tracking_uri, "--tracking.experiment", f"{experiment}-alone"]
        args += ["--trainer.enable_progress_bar", "false"]
        alone = run_configured("fit", args)
        assert alone is not None and alone.run_id not in (None, run.info.run_id)
        for key in ("train/loss", "val/loss"):
            packed = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            solo = [(m.step, m.value) for m in client.get_metric_history(alone.run_id, key)]
            assert [s for s, _ in packed] == [s for s, _ in solo] and len(packed) > 1, key
            for (step, x), (_, y) in zip(sorted(packed), sorted(solo), strict=True):
                assert math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6), (run.data.tags["arm"], key, step, x, y)
