"""Hand-written backpropagation (D2L 5.3) against autograd, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_d2l.models import MLP, MLPScratch, built
from lit_d2l.models.softmax import cross_entropy


def autograd_gradients(model: MLPScratch, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Autograd's ∂J/∂θ for the same parameters, on copies that track gradients."""
    tracked = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    x = X.reshape(len(X), -1)
    z = x @ tracked["W1"].T + tracked["b1"]
    o = model.phi(z) @ tracked["W2"].T + tracked["b2"]
    J = cross_entropy(o, y) + model.l2 / 2 * ((tracked["W1"] ** 2).sum() + (tracked["W2"] ** 2).sum())
    J.backward()
    return {name: t.grad for name, t in tracked.items()}


def scratch_model(activation: str, l2: float, seed: int = 0) -> MLPScratch:
    torch.manual_seed(seed)
    return built(
        MLPScratch(num_hiddens=16, activation=activation, sigma=0.5, num_inputs=12, num_outputs=5, l2=l2)
    ).double()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_hand_written_gradients_equal_autograd(activation: str, l2: float) -> None:
    model = scratch_model(activation, l2)
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(32, 3, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 5, (32,), generator=generator)
    by_hand, by_autograd = model.gradients(X, y), autograd_gradients(model, X, y)
    assert by_hand.keys() == by_autograd.keys() == {"W1", "b1", "W2", "b2"}
    for name in by_hand:
        assert torch.allclose(by_hand[name], by_autograd[name], rtol=0, atol=1e-10), name
        assert by_hand[name].abs().max() > 1e-4, f"{name}: a vanishing gradient would compare trivially"


def test_the_l2_term_adds_lambda_w_to_weights_only() -> None:
    X = torch.randn(8, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (8,))
    plain, penalised = scratch_model("relu", 0.0), scratch_model("relu", 0.5)
    g0, g1 = plain.gradients(X, y), penalised.gradients(X, y)
    assert torch.allclose(g1["W1"] - g0["W1"], 0.5 * penalised.W1, atol=1e-12)
    assert torch.allclose(g1["W2"] - g0["W2"], 0.5 * penalised.W2, atol=1e-12)
    assert torch.equal(g1["b1"], g0["b1"]) and torch.equal(g1["b2"], g0["b2"])


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_scratch_and_concise_mlp_agree_on_loss_and_gradients(activation: str) -> None:
    scratch = scratch_model(activation, l2=0.1)
    concise = built(MLP(hidden_sizes=[16], activation=activation, num_inputs=12, num_outputs=5, l2=0.1)).double()
    hidden, out = concise.linear_layers()
    with torch.no_grad():
        hidden.weight.copy_(scratch.W1)
        hidden.bias.copy_(scratch.b1)
        out.weight.copy_(scratch.W2)
        out.bias.copy_(scratch.b2)
    X = torch.randn(10, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (10,))
    J = concise.loss(concise(X), y) + concise.l2_penalty()
    J.backward()
    assert J.item() == pytest.approx(scratch.objectives((X, y))[0].item(), abs=1e-12)
    by_hand = scratch.gradients(X, y)
    for name, tensor in [("W1", hidden.weight), ("b1", hidden.bias), ("W2", out.weight), ("b2", out.bias)]:
        assert torch.allclose(tensor.grad, by_hand[name], atol=1e-10), name


def test_training_step_uses_no_autograd_and_lowers_the_objective() -> None:
    model = scratch_model("relu", 0.01).float()
    X, y = torch.randn(64, 12), torch.randint(0, 5, (64,))
    before = model.objectives((X, y))[0].item()
    for _ in range(50):
        with torch.no_grad():
            for name, grad in model.gradients(X, y).items():
                getattr(model, name).sub_(0.5 * grad)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.objectives((X, y))[0].item() < before * 0.5
    assert isinstance(model.W1, nn.Parameter)
