"""How the computation graph names things: D2L's symbols for variables and operators (D2L 5.3.2)."""

from __future__ import annotations

import re

from torch import Tensor

OBJECTIVE = ("L", "s", "J")

#: Autograd operations that only reshape or copy: left out of an operator's description.
SHAPE_OPS = {
    "View", "Reshape", "UnsafeView", "Permute", "T", "Transpose", "Expand", "Squeeze", "Unsqueeze",
    "Clone", "ToCopy", "Alias", "Select", "Slice", "AsStrided", "Flatten",
}  # fmt: skip

#: What an autograd operation is called in the figure.
SYMBOLS = {
    "Mm": "×", "Addmm": "×+", "Mv": "×", "Bmm": "×", "Matmul": "×", "Add": "+", "Sub": "−", "Mul": "·",
    "Div": "/", "Convolution": "∗", "AvgPool2D": "pool", "MaxPool2DWithIndices": "pool", "Sigmoid": "σ",
}  # fmt: skip


def variable_label(name: str, sink: str) -> str:
    """Mathtext for a variable: bold x, W⁽¹⁾, z, h′⁽²⁾ ...; italic L, s, J (L = J when there is no penalty)."""
    if name in OBJECTIVE:
        return "$L = J$" if name == sink == "L" else f"${name}$"
    match = re.fullmatch(r"([A-Za-z])('?)(\d*)", name)
    if match is None:  # a PyTorch module or parameter name
        return name
    letter, prime, layer = match.groups()
    superscript = f"^{{({layer})}}" if layer else ""
    return rf"$\mathbf{{{letter}}}{prime}{superscript}$"


def operator_label(output: str, ops: list[str], activation: str | None) -> tuple[str, str]:
    """(The symbol in the operator's circle, a short description) of the operator that computes ``output``."""
    names = [re.sub(r"Backward\d*$", "", op) for op in ops]
    described = ", ".join(dict.fromkeys(n.lower() for n in names if n not in SHAPE_OPS))
    if output == "J":
        return "+", "J = L + s"
    if output == "L":
        return r"$\ell$", "loss ℓ(o, y)"
    if output == "s":
        return r"$\frac{\lambda}{2}\|\cdot\|^2$", "penalty λ/2 Σ‖W‖²"
    if output.startswith("h'"):
        return "drop", "dropout"
    if output.startswith("h"):
        return r"$\phi$", activation or described
    symbols = "".join(dict.fromkeys(SYMBOLS.get(n, "") for n in names if n not in SHAPE_OPS))
    return symbols or (described[:5] or "id"), described


def shape_note(tensor: Tensor) -> str:
    """``256 × 784``, or ``scalar``."""
    return " × ".join(map(str, tensor.shape)) if tensor.ndim else "scalar"
