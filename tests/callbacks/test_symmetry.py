"""Symmetry (D2L 5.4.3): hidden units that start equal stay equal; distinct_units counts them."""

from __future__ import annotations

import torch

from lit_d2l.callbacks.diagnostics import distinct_units
from lit_d2l.models import MLP, MLPScratch, built


def test_constant_init_keeps_one_distinct_unit_per_layer_random_init_keeps_all() -> None:
    constant = built(MLP(hidden_sizes=[16, 16], num_inputs=8, num_outputs=3, init="constant", init_value=0.05))
    random = built(MLP(hidden_sizes=[16, 16], num_inputs=8, num_outputs=3, init="kaiming"))
    optimizer = torch.optim.SGD([*constant.parameters(), *random.parameters()], lr=0.5)
    X, y = torch.randn(64, 8), torch.randint(3, (64,))
    for _ in range(20):
        optimizer.zero_grad()
        (constant.loss(constant(X), y) + random.loss(random(X), y)).backward()
        optimizer.step()
    assert constant.net[1].weight.std() > 0, "training moved the weights"
    assert distinct_units(constant) == {"net.1": 1, "net.3": 1}, "the output layer is not a hidden layer"
    assert distinct_units(random) == {"net.1": 16, "net.3": 16}
    assert distinct_units(built(MLPScratch(num_hiddens=12, num_inputs=8, num_outputs=3))) == {"W1": 12}


def test_units_that_differ_only_in_their_bias_are_distinct() -> None:
    model = built(MLP(hidden_sizes=[4], num_inputs=3, num_outputs=2, init="constant", init_value=0.1))
    with torch.no_grad():
        model.net[1].bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert distinct_units(model) == {"net.1": 2}
