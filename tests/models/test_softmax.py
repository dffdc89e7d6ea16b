import pytest
import torch

from lit_d2l.models import SoftmaxRegression, SoftmaxRegressionScratch, built
from lit_d2l.models.softmax import cross_entropy, softmax


def test_softmax_and_cross_entropy_stay_finite_for_huge_logits() -> None:
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    probabilities = softmax(logits)
    assert torch.isfinite(probabilities).all()
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    loss = cross_entropy(logits, y)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1000.0, rel=1e-6)  # (0 + 2000) / 2
    assert torch.isfinite(logits.grad).all()


def test_scratch_cross_entropy_equals_torch() -> None:
    logits, y = torch.randn(20, 10, dtype=torch.float64), torch.randint(0, 10, (20,))
    assert cross_entropy(logits, y).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())


def test_scratch_and_concise_softmax_regression_agree_on_loss_and_gradients() -> None:
    torch.manual_seed(0)
    scratch = built(SoftmaxRegressionScratch(num_inputs=784, num_outputs=10)).double()
    concise = built(SoftmaxRegression(num_inputs=784, num_outputs=10)).double()
    with torch.no_grad():
        concise.net[1].weight.copy_(scratch.W.T)
        concise.net[1].bias.copy_(scratch.b + 0.1)
        scratch.b.add_(0.1)
    X, y = torch.rand(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    scratch_loss, concise_loss = scratch.loss(scratch(X), y), concise.loss(concise(X), y)
    scratch_loss.backward()
    concise_loss.backward()
    assert scratch_loss.item() == pytest.approx(concise_loss.item(), abs=1e-12)
    assert torch.allclose(scratch.W.grad.T, concise.net[1].weight.grad, atol=1e-12)
    assert torch.allclose(scratch.b.grad, concise.net[1].bias.grad, atol=1e-12)


def test_initial_weights_follow_d2l() -> None:
    torch.manual_seed(0)
    model = built(SoftmaxRegressionScratch(num_inputs=784, num_outputs=10))
    assert model.W.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(model.b, torch.zeros(10))


def test_the_cross_entropy_gradient_is_softmax_minus_one_hot() -> None:
    """∂ℓ/∂o = softmax(o) − y for one example (D2L 4.1.2.3); the mean over n examples divides it by n."""
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    (grad,) = torch.autograd.grad(cross_entropy(logits, y), logits)
    expected = (softmax(logits.detach()) - torch.nn.functional.one_hot(y, 5).double()) / len(y)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    big = (logits.detach() * 300).requires_grad_(True)  # the stable form's gradient survives huge logits too
    (grad,) = torch.autograd.grad(cross_entropy(big, y), big)
    torch.testing.assert_close(grad, (softmax(big.detach()) - torch.nn.functional.one_hot(y, 5).double()) / 6)
