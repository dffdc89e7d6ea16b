"""A packed arm follows the trajectory it follows alone: same per-step losses, same final parameters.

For each model family a pack of three arms with different learning rates, penalties, momentum,
initialisation and seeds is trained once, and each arm again alone through ``lit-d2l fit``'s own
path; float32 agreement to 1e-5 is required.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_d2l.fit.run import build
from lit_d2l.sweeps.packs import module
from lit_d2l.sweeps.packs.fit import build_arm, fit_pack
from tests.conftest import REPO
from tests.sweeps.packs.memory_logger import MemoryLogger

QUIET = ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
QUIET += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
LINEAR = [str(REPO / "experiments" / "linear_regression.yaml"), "--data.num_train", "96", "--data.num_val", "64"]
LINEAR += ["--data.num_test", "0", "--test_after_fit", "false"]
CLUSTERS = [str(REPO / "experiments" / "init_classification.yaml"), "--data.num_train", "192", "--data.num_val", "64"]
IMAGES = ["--data.num_train", "96", "--data.num_val", "32"]  # 28×28 clusters: fewer, for LeNet's convolutions


def seeded(seed: int) -> list[str]:
    return ["--seed_everything", str(seed), "--data.seed", str(seed)]


FAMILIES = {
    "LinearRegressionScratch": (
        LINEAR,
        [
            ["--model.lr", "0.03", "--model.l2", "0", "--model.sigma", "0.01", *seeded(0)],
            ["--model.lr", "0.01", "--model.l2", "0.1", "--model.sigma", "0.1", *seeded(1)],
            ["--model.lr", "0.05", "--model.l2", "1.0", "--model.sigma", "1.0", *seeded(2)],
        ],
    ),
    "LinearRegression": (
        [*LINEAR, "--model", "lit_d2l.models.LinearRegression"],
        [
            ["--model.lr", "0.03", "--model.momentum", "0", *seeded(0)],
            ["--model.lr", "0.01", "--model.momentum", "0.9", "--model.weight_decay", "0.01", *seeded(1)],
            ["--model.lr", "0.02", "--model.l2", "0.5", "--model.momentum", "0.5", *seeded(2)],
        ],
    ),
    "SoftmaxRegressionScratch": (
        [*CLUSTERS, "--model", "lit_d2l.models.SoftmaxRegressionScratch"],
        [
            ["--model.lr", "0.1", "--model.sigma", "0.01", *seeded(0)],
            ["--model.lr", "0.3", "--model.l2", "0.01", "--model.sigma", "0.1", *seeded(1)],
            ["--model.lr", "0.05", "--model.l2", "0.1", *seeded(2)],
        ],
    ),
    "SoftmaxRegression": (
        [*CLUSTERS, "--model", "lit_d2l.models.SoftmaxRegression"],
        [
            ["--model.lr", "0.1", *seeded(0)],
            ["--model.lr", "0.05", "--model.momentum", "0.9", "--model.sigma", "0.1", *seeded(1)],
            ["--model.lr", "0.2", "--model.weight_decay", "0.01", "--model.l2", "0.01", *seeded(2)],
        ],
    ),
    "MLP": (
        [*CLUSTERS, "--model.depth", "2"],
        [
            ["--model.lr", "0.1", "--model.init", "normal", "--model.init_std", "0.1", *seeded(0)],
            ["--model.lr", "0.05", "--model.momentum", "0.9", "--model.init", "xavier_normal", *seeded(1)],
            [
                "--model.lr",
                "0.2",
                "--model.l2",
                "0.001",
                "--model.init",
                "kaiming",
                "--model.weight_decay",
                "0.01",
                *seeded(2),
            ],
        ],
    ),
    "LeNet": (  # convolution and pooling (D2L 7.6), on 28×28 "images" of Gaussian clusters
        [*CLUSTERS[:1], "--model", "lit_d2l.models.LeNet", "--data.num_inputs", "784", *IMAGES],
        [
            ["--model.lr", "0.9", *seeded(0)],
            ["--model.lr", "0.3", "--model.momentum", "0.9", "--model.l2", "0.01", *seeded(1)],
            ["--model.lr", "0.5", "--model.weight_decay", "0.01", *seeded(2)],
        ],
    ),
    "InitLayersClassifier": (  # layers made in __init__, as Lightning's documentation writes a module
        [*CLUSTERS, "--model", "tests.sweeps.packs.own_models.InitLayersClassifier"],
        [
            ["--model.lr", "0.1", *seeded(0)],
            ["--model.lr", "0.05", "--model.momentum", "0.9", "--model.l2", "0.01", *seeded(1)],
            ["--model.lr", "0.2", "--model.weight_decay", "0.01", *seeded(2)],
        ],
    ),
    "MLP Adam": (  # each arm its own lr, betas, eps and weight decay (biases never decay)
        [*CLUSTERS, "--model.depth", "2", "--optimizer", "Adam"],
        [
            ["--optimizer.lr", "0.01", *seeded(0)],
            [
                "--optimizer.lr",
                "0.003",
                "--optimizer.betas",
                "[0.8, 0.99]",
                "--optimizer.weight_decay",
                "0.01",
                *seeded(1),
            ],
            ["--optimizer.lr", "0.02", "--optimizer.eps", "1e-4", "--model.l2", "0.001", *seeded(2)],
        ],
    ),
    "MLP AdamW": (
        [*CLUSTERS, "--model.depth", "2", "--optimizer", "AdamW"],
        [
            ["--optimizer.lr", "0.01", "--optimizer.weight_decay", "0", *seeded(0)],
            ["--optimizer.lr", "0.003", "--optimizer.weight_decay", "0.1", *seeded(1)],
            ["--optimizer.lr", "0.02", "--optimizer.betas", "[0.85, 0.95]", *seeded(2)],
        ],
    ),
    "MLP StepLR": (  # each arm its own step size and decay factor
        [*CLUSTERS, "--model.depth", "2", "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1"],
        [
            ["--model.lr", "0.2", "--lr_scheduler.gamma", "0.5", *seeded(0)],
            ["--model.lr", "0.1", "--lr_scheduler.gamma", "0.1", "--model.momentum", "0.9", *seeded(1)],
            ["--model.lr", "0.3", "--lr_scheduler.step_size", "2", *seeded(2)],
        ],
    ),
    "MLP Adam CosineAnnealingLR": (
        [*CLUSTERS, "--model.depth", "2", "--optimizer", "Adam", "--lr_scheduler", "CosineAnnealingLR"],
        [
            ["--optimizer.lr", "0.01", "--lr_scheduler.T_max", "2", *seeded(0)],
            ["--optimizer.lr", "0.003", "--lr_scheduler.T_max", "3", "--lr_scheduler.eta_min", "0.001", *seeded(1)],
            ["--optimizer.lr", "0.02", "--lr_scheduler.T_max", "1", *seeded(2)],
        ],
    ),
    "ResidualMLP": (  # a subclass in the user's own package (a test module), with its own forward
        [*CLUSTERS, "--model", "tests.sweeps.packs.own_models.ResidualMLP", "--model.depth", "2"],
        [
            ["--model.lr", "0.1", "--model.init", "normal", "--model.init_std", "0.1", *seeded(0)],
            ["--model.lr", "0.05", "--model.momentum", "0.9", "--model.l2", "0.01", *seeded(1)],
            ["--model.lr", "0.2", "--model.weight_decay", "0.01", "--model.init", "kaiming", *seeded(2)],
        ],
    ),
}


class StepLosses(L.Callback):
    """Every training step's loss of a single fit."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit_args(base: list[str], arm: list[str]) -> list[str]:
    return ["--config", *base, *arm, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1", *QUIET]


FAST = (
    "MLP",
    "MLP Adam",
    "MLP AdamW",
    "MLP StepLR",
    "MLP Adam CosineAnnealingLR",
    "ResidualMLP",
    "InitLayersClassifier",
)  # the other families: slow


def assert_packed_equals_alone(base: list[str], arms_settings: list[list[str]]) -> None:
    """One pack of the arms, then each arm alone through ``fit``'s own path: the same loss at every step,
    the same final parameters, to 1e-5; every epoch metric recorded; a StepLR arm's learning rate logged."""
    arms = [build_arm(fit_args(base, settings)) for settings in arms_settings]
    for arm in arms:
        arm.logger = MemoryLogger()
    results = fit_pack(arms)
    assert [r.outcome for r in results] == ["finished"] * len(arms)
    for arm, settings in zip(arms, arms_settings, strict=True):
        steps = StepLosses()
        cli = build("fit", fit_args(base, settings), callbacks=[steps])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        packed_losses = arm.logger.metrics["train/loss"]
        assert sorted(packed_losses) == list(range(len(steps.losses)))
        torch.testing.assert_close(
            torch.tensor([packed_losses[step] for step in range(len(steps.losses))]),
            torch.tensor(steps.losses),
            rtol=1e-5,
            atol=1e-5,
        )
        alone = dict(cli.model.named_parameters())
        for name, value in arm.model.named_parameters():
            torch.testing.assert_close(value, alone[name], rtol=1e-5, atol=1e-5)
        assert arm.logger.metrics["val/loss"]  # and every epoch metric was recorded
        given = dict(zip(settings[::2], settings[1::2], strict=False))
        if "StepLR" in base:  # the learning rate each epoch, as a single fit's LearningRateMonitor logs it
            gamma = float(given.get("--lr_scheduler.gamma", 0.1)) if "--lr_scheduler.step_size" not in given else 1.0
            rates = next(v for k, v in arm.logger.metrics.items() if k.startswith("lr-") and k.endswith("/weights"))
            assert list(rates) == [0, len(steps.losses) // 2]  # epoch 1 starts at half the steps of 2 epochs
            assert rates[len(steps.losses) // 2] == pytest.approx(rates[0] * gamma)
        assert arm.logger.metrics["train/loss_epoch"]


@pytest.mark.parametrize(
    "family",
    [pytest.param(name, marks=[] if name in FAST else [pytest.mark.slow]) for name in FAMILIES],
)
def test_a_packed_arm_equals_the_same_arm_alone(family: str) -> None:
    base, arms_settings = FAMILIES[family]
    assert {build_arm(fit_args(base, arms_settings[0])).model.__class__.__name__} == {family.split()[0]}
    assert_packed_equals_alone(base, arms_settings)


@pytest.mark.slow
@pytest.mark.parametrize("looped", [True, False], ids=["one arm at a time", "vmap"])
def test_a_convolutional_pack_equals_its_arms_alone_in_a_loop_or_under_vmap(looped: bool, monkeypatch) -> None:
    """On a CPU a pack runs convolutions one arm at a time (vmap's grouped ones are slower there); on a GPU under
    vmap. Both paths, here on the CPU: each arm as alone."""
    paths: list[bool] = []
    map_arms = module.map_arms

    def spied(one, args, looped=False):
        paths.append(looped)
        return map_arms(one, args, looped)

    monkeypatch.setattr(module, "map_arms", spied)
    if not looped:
        monkeypatch.setattr(module, "LOOPED_ON_CPU", ())  # as if its layers ran faster vectorized
    base, arms_settings = FAMILIES["LeNet"]
    assert_packed_equals_alone(base, arms_settings)
    assert paths and set(paths) == {looped}


#: Models of the matrix: lit-d2l's LeNet, the user's own CNN (outside lit_d2l, layers in __init__), a subclass of MLP.
MATRIX_MODELS = {
    "LeNet": [*CLUSTERS[:1], "--model", "lit_d2l.models.LeNet", "--data.num_inputs", "784", *IMAGES],
    "SmallCNN": [
        *CLUSTERS[:1],
        "--model",
        "tests.sweeps.packs.own_models.SmallCNN",
        "--data.num_inputs",
        "784",
        *IMAGES,
    ],
    "ResidualMLP": [*CLUSTERS, "--model", "tests.sweeps.packs.own_models.ResidualMLP", "--model.depth", "2"],
}
#: Optimizers of the matrix: (the base's extra arguments, the flags of each arm's lr and weight decay, base lr).
#: Adam runs in float64 here: Adam divides by √v + ε, so a gradient that cancels to ~1e-8 (LeNet's first step
#: has one of -3.1e-8 among its 61,706 weights) keeps few correct float32 digits in any summation order, and
#: Adam makes it a step of ~lr: in float32 one LeNet weight differs by 1.3e-5 between the vectorized forward
#: and the single one. Adam's update itself is torch's bit for bit (test_optim.py); MLP Adam passes in float32.
ADAM = ["--trainer.precision", "64-true"]
MATRIX_OPTIMIZERS = {
    "SGD": (["--optimizer", "SGD", "--optimizer.momentum", "0.9"], "--optimizer.lr", "--optimizer.weight_decay", 0.1),
    "Adam": (["--optimizer", "Adam", *ADAM], "--optimizer.lr", "--optimizer.weight_decay", 0.01),
    "AdamW": (["--optimizer", "AdamW", *ADAM], "--optimizer.lr", "--optimizer.weight_decay", 0.01),
    "StepLR": (
        ["--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1"],
        "--model.lr",
        "--model.weight_decay",
        0.3,
    ),
}
#: Each arm's own (seed, lr factor, weight decay, dropout p): every one differs between the arms of one pack.
MATRIX_ARMS = [(0, 1.0, 0.0, 0.1), (1, 0.5, 0.01, 0.3), (2, 2.0, 0.1, 0.5)]


@pytest.mark.parametrize("optimizer", list(MATRIX_OPTIMIZERS))
@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=[] if m == "ResidualMLP" else [pytest.mark.slow]) for m in MATRIX_MODELS]
)
def test_a_pack_whose_arms_differ_in_seed_lr_decay_and_dropout_equals_each_arm_alone(model, optimizer) -> None:
    extra, lr_flag, decay_flag, lr = MATRIX_OPTIMIZERS[optimizer]
    arms_settings = [
        [lr_flag, str(lr * factor), decay_flag, str(decay), "--model.dropout", str(p), *seeded(seed)]
        for seed, factor, decay, p in MATRIX_ARMS
    ]
    assert_packed_equals_alone([*MATRIX_MODELS[model], *extra], arms_settings)


def test_a_pack_trains_in_bfloat16_when_asked() -> None:
    base, arms_settings = FAMILIES["MLP"]
    arms = [
        build_arm([*fit_args(base, settings), "--trainer.precision", "bf16-mixed"]) for settings in arms_settings[:2]
    ]
    for arm in arms:
        arm.logger = MemoryLogger()
    results = fit_pack(arms)
    assert [r.outcome for r in results] == ["finished", "finished"]
    first, last = (
        arms[0].logger.metrics["train/loss"][step] for step in (0, max(arms[0].logger.metrics["train/loss"]))
    )
    assert last < first  # it learns
    assert all(p.dtype == torch.float32 for p in arms[0].model.parameters())  # mixed: weights stay float32


def test_a_model_with_its_layers_in_init_checkpoints_and_resumes(tmp_path) -> None:
    """Trained 2 epochs, checkpointed, resumed for a third: the same parameters as 3 epochs straight."""
    base = [*CLUSTERS, "--model", "tests.sweeps.packs.own_models.InitLayersClassifier", *seeded(0)]

    def fit(epochs: int, ckpt_path: str | None = None):
        cli = build("fit", [*fit_args(base, []), "--trainer.max_epochs", str(epochs)])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        return cli

    straight = fit(3)
    path = tmp_path / "two-epochs.ckpt"
    fit(2).trainer.save_checkpoint(path)
    resumed = fit(3, str(path))
    assert resumed.trainer.current_epoch == 3
    expected = dict(straight.model.named_parameters())
    for name, value in resumed.model.named_parameters():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-6)
