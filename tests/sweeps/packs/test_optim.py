"""PackedSGD takes, for every arm, the step torch's SGD (or MinibatchSGD) takes for that arm alone."""

from __future__ import annotations

import pytest
import torch

from lit_d2l.models.sgd import MinibatchSGD
from lit_d2l.sweeps.packs.optim import PackedAdam, PackedSGD


def test_each_arm_steps_as_sgd_with_its_own_lr_momentum_and_weight_decay() -> None:
    torch.manual_seed(0)
    settings = ([0.1, 0.03, 0.5], [0, 0.9, 0.5], [0, 0.1, 1e-3])
    lr, momentum, decay = (torch.tensor(values, dtype=torch.float64) for values in settings)
    weights, biases = torch.randn(3, 4, 5), torch.randn(3, 5)
    packed_w, packed_b = torch.nn.Parameter(weights.clone()), torch.nn.Parameter(biases.clone())
    active = torch.ones(3, dtype=torch.bool)
    groups = [{"params": [packed_w], "decay": True}, {"params": [packed_b], "decay": False}]
    packed = PackedSGD(groups, lambda: {"lr": lr, "momentum": momentum, "weight_decay": decay, "active": active})
    alone = []
    for k in range(3):
        w, b = torch.nn.Parameter(weights[k].clone()), torch.nn.Parameter(biases[k].clone())
        groups_k = [{"params": [w], "weight_decay": float(decay[k])}, {"params": [b], "weight_decay": 0.0}]
        alone.append((w, b, torch.optim.SGD(groups_k, lr=float(lr[k]), momentum=float(momentum[k]))))
    for _ in range(5):
        grad_w, grad_b = torch.randn(3, 4, 5), torch.randn(3, 5)
        packed_w.grad, packed_b.grad = grad_w.clone(), grad_b.clone()
        packed.step()
        for k, (w, b, sgd) in enumerate(alone):
            w.grad, b.grad = grad_w[k].clone(), grad_b[k].clone()
            sgd.step()
    for k, (w, b, _) in enumerate(alone):  # bit for bit: the same operations in the same order
        torch.testing.assert_close(packed_w[k], w, rtol=0, atol=0)
        torch.testing.assert_close(packed_b[k], b, rtol=0, atol=0)


def test_without_momentum_it_is_minibatch_sgd_and_an_inactive_arm_never_moves() -> None:
    start = torch.randn(2, 3)
    packed_p = torch.nn.Parameter(start.clone())
    active = torch.tensor([True, False])
    lr, zeros = torch.tensor([0.2, 0.2], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    settings = {"lr": lr, "momentum": zeros, "weight_decay": zeros, "active": active}
    packed = PackedSGD([{"params": [packed_p], "decay": False, "momentum": False}], lambda: dict(settings))
    alone = torch.nn.Parameter(start[0].clone())
    sgd = MinibatchSGD([alone], lr=0.2)
    grad = torch.tensor([[1.0, -2.0, 0.5], [float("nan"), float("inf"), 1.0]])
    packed_p.grad, alone.grad = grad.clone(), grad[0].clone()
    packed.step()
    sgd.step()
    torch.testing.assert_close(packed_p[0], alone)
    assert torch.equal(packed_p[1], start[1])  # frozen, NaN and inf gradient notwithstanding
    assert not packed.state[packed_p]  # no momentum buffer when no arm uses momentum


@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
def test_each_arm_steps_as_adam_or_adamw_with_its_own_settings(decoupled: bool) -> None:
    """Arm k of PackedAdam equals torch.optim.Adam (AdamW) alone with arm k's lr, betas, eps and weight
    decay, weights decayed and biases not; a frozen (diverged) arm does not move."""
    torch.manual_seed(0)
    lr, eps, beta1, beta2, decay = (
        torch.tensor(values, dtype=torch.float64)
        for values in (
            [0.01, 0.05, 0.002, 0.01],
            [1e-8, 1e-6, 1e-4, 1e-8],
            [0.9, 0.8, 0.95, 0.9],
            [0.999, 0.99, 0.9, 0.999],
            [0.0, 0.1, 0.01, 0.1],
        )
    )
    active = torch.tensor([True, True, True, False])
    W, B = torch.randn(4, 4, 5), torch.randn(4, 5)
    packed_W, packed_B = W.clone().requires_grad_(), B.clone().requires_grad_()
    groups = [{"params": [packed_W], "decay": True}, {"params": [packed_B], "decay": False}]
    settings = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": decay}
    packed = PackedAdam(groups, lambda: {**settings, "active": active}, decoupled)
    alone = []
    for k in range(3):
        w, b = W[k].clone().requires_grad_(), B[k].clone().requires_grad_()
        optimizer = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
            [{"params": [w], "weight_decay": float(decay[k])}, {"params": [b], "weight_decay": 0.0}],
            lr=float(lr[k]),
            betas=(float(beta1[k]), float(beta2[k])),
            eps=float(eps[k]),
        )
        alone.append((w, b, optimizer))
    for _ in range(5):  # the same gradients for both, tiny ones included (Adam scales them up to ~lr)
        grad_W, grad_B = torch.randn(4, 4, 5) * torch.logspace(-9, 0, 5), torch.randn(4, 5)
        packed_W.grad, packed_B.grad = grad_W.clone(), grad_B.clone()
        packed.step()
        for k, (w, b, optimizer) in enumerate(alone):
            w.grad, b.grad = grad_W[k].clone(), grad_B[k].clone()
            optimizer.step()
    for k, (w, b, _) in enumerate(alone):  # bit for bit: torch's own operations in its order
        torch.testing.assert_close(packed_W[k], w, rtol=0, atol=0)
        torch.testing.assert_close(packed_B[k], b, rtol=0, atol=0)
    assert torch.equal(packed_W[3], W[3]) and torch.equal(packed_B[3], B[3])
