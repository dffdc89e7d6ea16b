"""Callbacks: divergence guard, per-layer diagnostics, graceful stop on a signal, graph and memory at step 0."""

from lit_d2l.callbacks.diagnostics import LayerDiagnostics
from lit_d2l.callbacks.divergence import Diverged, DivergenceGuard
from lit_d2l.callbacks.graceful_stop import GracefulStop
from lit_d2l.callbacks.graph import ComputationGraphArtifact
from lit_d2l.callbacks.memory import MemoryMeter

__all__ = ["ComputationGraphArtifact", "Diverged", "DivergenceGuard", "GracefulStop", "LayerDiagnostics", "MemoryMeter"]
