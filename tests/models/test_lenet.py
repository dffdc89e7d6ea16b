"""LeNet-5 as D2L builds it (7.6): shapes and parameter count."""

from __future__ import annotations

import torch

from lit_d2l.models import LeNet, built


def test_lenet_maps_images_to_logits_with_d2l_layer_shapes() -> None:
    model = built(LeNet(num_outputs=10))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # conv 1·6·25+6, conv 6·16·25+16, dense 400·120+120, 120·84+84, 84·10+10
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert set(model.weights()) == {"net.0.weight", "net.3.weight", "net.7.weight", "net.9.weight", "net.11.weight"}
