"""Training keeps the forward pass's intermediates for backward; inference keeps none (D2L 5.3.3)."""

from __future__ import annotations

import itertools

import torch

from lit_d2l.callbacks.memory import step_memory, training_step_bytes
from lit_d2l.models import MLP, MLPScratch, built
from lit_d2l.models.memory import saved_for_backward


def test_saved_bytes_are_positive_in_training_zero_in_inference_and_linear_in_the_batch() -> None:
    model = built(MLP(hidden_sizes=[32, 32], num_inputs=20, num_outputs=10, init_seed=0))
    X, y = torch.randn(64, 20), torch.randint(10, (64,))

    def saved(n: int) -> int:
        return saved_for_backward(lambda: model.loss(model(X[:n].clone()), y[:n]))[1]  # a storage of n rows

    assert saved(16) > 0
    with torch.no_grad():
        assert saved(16) == 0
    steps = [saved(n) for n in (16, 32, 48, 64)]
    assert len({b - a for a, b in itertools.pairwise(steps)}) == 1, steps  # equal steps: linear
    assert steps[1] - steps[0] >= 16 * (20 + 32 + 32) * 4, "at least each layer's float32 input per example"


def test_the_meter_counts_what_autograd_would_save_even_for_hand_written_backprop() -> None:
    model = built(MLPScratch(num_hiddens=32, num_inputs=20, num_outputs=10, l2=0.1))
    batch = (torch.randn(16, 20), torch.randint(10, (16,)))
    assert training_step_bytes(model, batch) > 0
    assert not any(p.requires_grad for p in model.parameters())
    metrics = step_memory(model, batch)
    fixed, per_example = (
        metrics["memory/saved_for_backward_bytes_fixed"],
        metrics["memory/saved_for_backward_bytes_per_example"],
    )
    assert metrics["memory/saved_for_backward_bytes"] == fixed + 16 * per_example
    assert fixed > 0, "W2 (for ∂J/∂h) and the weights of the penalty are saved once, whatever the batch"
