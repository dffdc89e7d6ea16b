"""Callbacks: divergence guard, per-layer diagnostics, graceful stop on a signal."""

from lit_d2l.callbacks.diagnostics import LayerDiagnostics
from lit_d2l.callbacks.divergence import Diverged, DivergenceGuard
from lit_d2l.callbacks.graceful_stop import GracefulStop

__all__ = ["Diverged", "DivergenceGuard", "GracefulStop", "LayerDiagnostics"]
