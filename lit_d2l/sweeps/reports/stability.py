"""D2L 5.4's numerical-stability figures, computed rather than quoted.

- a chain of 30 scalar layers with weight 0.2 or 5 scales its input by 0.2³⁰ ≈ 1e−21 or 5³⁰ ≈ 9e20;
- the product of 100 random 4×4 N(0, 1) matrices explodes;
- sigmoid′ ≤ 0.25, so the gradient through a stack of sigmoids vanishes geometrically.
"""

from __future__ import annotations

import torch


def scalar_chain(weight: float, depth: int = 30) -> float:
    """Output / input of ``depth`` scalar linear layers with the same weight (float64)."""
    x = torch.tensor(1.0, dtype=torch.float64)
    for _ in range(depth):
        x = weight * x
    return x.item()


def matrix_product_norm(depth: int = 100, size: int = 4, seed: int = 0) -> float:
    """Frobenius norm of the product of ``depth`` random ``size``×``size`` N(0, 1) matrices."""
    generator = torch.Generator().manual_seed(seed)
    product = torch.eye(size, dtype=torch.float64)
    for _ in range(depth):
        product = product @ torch.randn(size, size, generator=generator, dtype=torch.float64)
    return product.norm().item()


def sigmoid_stack_gradient(depth: int = 30) -> float:
    """d(output)/d(input) through ``depth`` sigmoids, at input 0 (each factor ≤ 0.25)."""
    x = torch.zeros((), dtype=torch.float64, requires_grad=True)
    y = x
    for _ in range(depth):
        y = torch.sigmoid(y)
    (grad,) = torch.autograd.grad(y, x)
    return grad.item()


def stability_figures() -> dict[str, float]:
    return {
        "stability/scalar_chain_w0.2_depth30": scalar_chain(0.2),
        "stability/scalar_chain_w5_depth30": scalar_chain(5.0),
        "stability/matrix_product_norm_100x4x4": matrix_product_norm(),
        "stability/sigmoid_stack_grad_depth30": sigmoid_stack_gradient(),
        "stability/sigmoid_prime_max": 0.25,
    }
