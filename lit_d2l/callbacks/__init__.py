"""Callbacks: divergence guard, layer diagnostics, graceful stop, stored-first checkpoints, graph and memory
at step 0, train accuracy, the trained model to MLflow, heartbeat lines."""

from lit_d2l.callbacks.diagnostics import LayerDiagnostics
from lit_d2l.callbacks.divergence import Diverged, DivergenceGuard
from lit_d2l.callbacks.graceful_stop import GracefulStop
from lit_d2l.callbacks.graph import ComputationGraphArtifact
from lit_d2l.callbacks.heartbeat import Heartbeat
from lit_d2l.callbacks.logged_model import LogModel
from lit_d2l.callbacks.memory import MemoryMeter
from lit_d2l.callbacks.stored_first import StoredFirst
from lit_d2l.callbacks.train_accuracy import TrainAccuracy

__all__ = [
    "ComputationGraphArtifact",
    "Diverged",
    "DivergenceGuard",
    "GracefulStop",
    "Heartbeat",
    "LayerDiagnostics",
    "LogModel",
    "MemoryMeter",
    "StoredFirst",
    "TrainAccuracy",
]
