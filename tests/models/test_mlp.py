import lightning as L
import pytest
import torch

from lit_d2l.errors import ConfigError
from lit_d2l.models import MLP, DropoutScratch, MLPScratch, built
from lit_d2l.models.init import init_linear


class Blobs(L.LightningDataModule):
    """Ten Gaussian blobs in 20 dimensions: a small classification task that trains in a second."""

    num_inputs, num_outputs = 20, 10

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        centres = torch.randn(10, 20, generator=generator) * 3
        self.y = torch.arange(600) % 10
        self.X = centres[self.y] + torch.randn(600, 20, generator=generator)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.X, self.y), batch_size=32, shuffle=True)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.X, self.y), batch_size=200)


def train(model, epochs: int, quiet_trainer: dict) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, logger=False, **quiet_trainer)
    trainer.fit(model, Blobs())
    return trainer


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mlp_learns_a_separable_task(activation: str, quiet_trainer: dict) -> None:
    torch.manual_seed(0)
    trainer = train(MLP(hidden_sizes=[32], activation=activation, init="xavier_uniform", lr=0.5), 5, quiet_trainer)
    assert trainer.callback_metrics["val/acc"] > 0.9


def test_mlp_scratch_trains_by_hand(quiet_trainer: dict) -> None:
    torch.manual_seed(0)
    model = MLPScratch(num_hiddens=32, sigma=0.1, lr=0.5)
    trainer = train(model, 5, quiet_trainer)
    assert trainer.callback_metrics["val/acc"] > 0.9
    assert not any(p.requires_grad for p in model.parameters())


def test_symmetric_init_keeps_hidden_units_identical_and_random_init_breaks_it(quiet_trainer: dict) -> None:
    """D2L 5.4.2: with every weight equal, every hidden unit gets the same gradient: one unit in effect."""
    torch.manual_seed(0)
    symmetric = MLP(hidden_sizes=[16], activation="tanh", init="constant", init_value=0.05, lr=0.5)
    train(symmetric, 3, quiet_trainer)
    hidden = symmetric.linear_layers()[0].weight.detach()
    assert (hidden - hidden[0]).abs().max() < 1e-6, "all rows (hidden units) are still the same"
    assert (hidden - 0.05).abs().max() > 1e-3, "the weights did train"

    random = MLP(hidden_sizes=[16], activation="tanh", init="normal", init_std=0.1, lr=0.5)
    train(random, 3, quiet_trainer)
    hidden = random.linear_layers()[0].weight.detach()
    assert (hidden - hidden[0]).abs().max() > 0.1


@pytest.mark.parametrize("module", [torch.nn.Dropout(0.5), DropoutScratch(0.5), DropoutScratch(0.2)])
def test_dropout_preserves_the_mean_in_training_and_is_identity_in_eval(module) -> None:
    torch.manual_seed(0)
    X = torch.rand(2000, 500) + 1.0
    module.train()
    out = module(X)
    p = module.p
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
    assert out.mean().item() == pytest.approx(X.mean().item(), rel=0.01)
    survivors = out != 0
    assert torch.allclose(out[survivors], X[survivors] / (1 - p))
    module.eval()
    assert torch.equal(module(X), X)


@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_mlp_in_eval_equals_the_network_without_dropout(impl: str) -> None:
    torch.manual_seed(0)
    with_dropout = built(
        MLP(hidden_sizes=[64, 64], dropout=[0.5, 0.5], dropout_impl=impl, num_inputs=20, num_outputs=10)
    )
    without = built(MLP(hidden_sizes=[64, 64], dropout=0.0, num_inputs=20, num_outputs=10))
    with torch.no_grad():
        for source, target in zip(with_dropout.linear_layers(), without.linear_layers(), strict=True):
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
    X = torch.randn(8, 20)
    with_dropout.eval()
    without.eval()
    assert torch.equal(with_dropout(X), with_dropout(X))
    assert torch.allclose(with_dropout(X), without(X))
    with_dropout.train()
    assert not torch.allclose(with_dropout(X), without(X))


@pytest.mark.parametrize(
    ("scheme", "check"),
    [
        ("normal", lambda w: abs(w.std().item() - 0.01) < 0.001),
        ("uniform", lambda w: w.abs().max().item() <= 1 / 100**0.5),
        ("xavier_uniform", lambda w: w.abs().max().item() <= (6 / (100 + 400)) ** 0.5),
        ("xavier_normal", lambda w: abs(w.var().item() - 2 / 500) < 0.0005),
        ("kaiming", lambda w: abs(w.var().item() - 2 / 100) < 0.002),
        ("constant", lambda w: bool((w == 0.3).all())),
        ("zeros", lambda w: bool((w == 0).all())),
    ],
)
def test_init_schemes(scheme: str, check) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(100, 400)
    init_linear(layer, scheme, std=0.01, value=0.3, bias=0.7)
    assert check(layer.weight.detach())
    assert (layer.bias == 0.7).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"activation": "swish"}, "activation must be one of relu, sigmoid, tanh"),
        ({"init": "he"}, "init must be one of normal, uniform, xavier_normal"),
        ({"hidden_sizes": [256, 0]}, "hidden_sizes must all be > 0"),
        ({"hidden_sizes": []}, "at least one layer"),
        ({"dropout": [0.5]}, "1 values for 2 hidden layers"),
    ],
)
def test_bad_mlp_settings_list_the_valid_choices(kwargs: dict, message: str) -> None:
    settings = {"hidden_sizes": [256, 256], **kwargs}
    with pytest.raises(ConfigError, match=message):
        MLP(**settings)


def test_bad_scratch_settings() -> None:
    with pytest.raises(ConfigError, match=r"activation must be one of relu, sigmoid, tanh \(from scratch\)"):
        MLPScratch(activation="gelu")
    with pytest.raises(ConfigError, match="num_hiddens must be > 0"):
        MLPScratch(num_hiddens=0)


def test_weight_decay_applies_to_weights_not_biases() -> None:
    model = built(MLP(hidden_sizes=[8], num_inputs=4, num_outputs=3, weight_decay=0.5))
    groups = model.configure_optimizers().param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.5 for p in g["params"]}
    assert decayed == {id(layer.weight) for layer in model.linear_layers()}


def test_a_checkpoint_reloads_with_the_shapes_taken_from_the_data(tmp_path, quiet_trainer: dict) -> None:
    from lit_d2l.data import GaussianClusters

    model = MLP(hidden_sizes=[16])
    trainer = L.Trainer(max_epochs=1, logger=False, **quiet_trainer)
    trainer.fit(model, GaussianClusters(num_train=128, num_val=32, batch_size=32))
    trainer.save_checkpoint(tmp_path / "mlp.ckpt")
    restored = MLP.load_from_checkpoint(tmp_path / "mlp.ckpt")
    X = torch.randn(4, 20)
    model.eval()
    restored.eval()
    assert torch.equal(restored(X), model(X))
