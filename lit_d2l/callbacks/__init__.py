"""Callbacks: divergence guard and per-layer diagnostics."""

from lit_d2l.callbacks.diagnostics import LayerDiagnostics
from lit_d2l.callbacks.divergence import Diverged, DivergenceGuard

__all__ = ["Diverged", "DivergenceGuard", "LayerDiagnostics"]
