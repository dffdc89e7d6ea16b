"""Dropout in a pack: each arm draws its own masks, with its own keep rate (D2L 5.6)."""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from lit_d2l.packing.module import ArmDropout


def test_arms_draw_independent_masks_at_their_own_rate() -> None:
    torch.manual_seed(0)
    dropout = ArmDropout().train()
    p = torch.tensor([0.2, 0.2, 0.5, 0.8])
    ones = torch.ones(4, 20_000)

    def one(p_k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(dropout, {"p": p_k}, (x,))

    out = vmap(one, randomness="different")(p, ones)
    kept = out != 0
    torch.testing.assert_close(kept.float().mean(dim=1), 1 - p, atol=0.015, rtol=0)
    survivors = out[kept]
    scale = (1 / (1 - p)).unsqueeze(1).expand_as(out)[kept]
    torch.testing.assert_close(survivors, scale)  # inverted dropout: survivors scaled by 1/(1 - p)
    agreement = (kept[0] == kept[1]).float().mean()  # two arms with the same p: independent masks
    assert 0.6 < agreement < 0.75  # independent: 0.8² + 0.2² = 0.68; identical masks would give 1


def test_dropout_is_the_identity_in_evaluation() -> None:
    dropout = ArmDropout().eval()
    x = torch.randn(3, 5)
    assert torch.equal(functional_call(dropout, {"p": torch.tensor(0.5)}, (x,)), x)
