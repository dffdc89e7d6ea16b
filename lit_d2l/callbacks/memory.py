"""Memory of training vs inference, measured at a fit's first step (D2L 5.3.3).

Backpropagation needs the forward pass's intermediate values, so a training step keeps them until
backward while prediction frees each at once. Logged once per fit:

- ``memory/saved_for_backward_bytes``: what autograd saves for backward in one training step on the
  first batch (each distinct storage once; inference saves 0);
- ``memory/saved_for_backward_bytes_per_example``: how much more one more example in the batch costs
  (measured on the batch and on its first half; the count is linear in the batch size), and
  ``memory/saved_for_backward_bytes_fixed``: the part that does not grow with the batch (the weights
  saved to carry gradients back to the layer below, or for the penalty);
- on CUDA, ``memory/cuda_peak_train_step_bytes`` and ``memory/cuda_peak_inference_step_bytes``: the
  peak memory above what was allocated before, of a forward + backward vs a forward under no_grad.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from lit_d2l.models.base import D2LModule
from lit_d2l.models.memory import saved_for_backward
from lit_d2l.models.probe import autograd_probe, objective_of


class MemoryMeter(L.Callback):
    """Log the memory a training step keeps for backward, once per fit, from a side pass over the first batch."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != 0 or batch_idx != 0 or not isinstance(pl_module, D2LModule):
            return
        batch = tuple(batch)
        with trainer.precision_plugin.forward_context():
            metrics = step_memory(pl_module, batch)
            if batch[0].is_cuda:
                metrics |= cuda_peaks(pl_module, batch)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def training_step_bytes(model: nn.Module, batch: tuple[Tensor, ...]) -> int:
    """Bytes autograd saves for backward in the objective J of one training step on ``batch``."""
    with autograd_probe(model):
        _, saved = saved_for_backward(lambda: objective_of(model, model(*batch[:-1]), batch[-1]).J)
    return saved


def step_memory(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, float]:
    """``memory/saved_for_backward_bytes`` on ``batch`` and the cost of one more example in it."""
    size = len(batch[-1])
    saved = training_step_bytes(model, batch)
    metrics = {"memory/saved_for_backward_bytes": float(saved)}
    if size >= 2:
        half = tuple(t[: size // 2] for t in batch)
        slope = (saved - training_step_bytes(model, half)) / (size - size // 2)
        metrics["memory/saved_for_backward_bytes_per_example"] = float(slope)
        metrics["memory/saved_for_backward_bytes_fixed"] = float(saved - slope * size)
    return metrics


def cuda_peaks(model: nn.Module, batch: tuple[Tensor, ...]) -> dict[str, float]:
    """Peak CUDA memory above the baseline: a training step (forward + backward, without touching ``.grad``)
    against an inference step (forward under no_grad, dropout off)."""
    device = batch[0].device
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with autograd_probe(model):
        J = objective_of(model, model(*batch[:-1]), batch[-1]).J
        torch.autograd.grad(J, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
        del J
    train = torch.cuda.max_memory_allocated(device) - baseline
    torch.cuda.reset_peak_memory_stats(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(*batch[:-1])
    model.train(was_training)
    inference = torch.cuda.max_memory_allocated(device) - baseline
    return {
        "memory/cuda_peak_train_step_bytes": float(train),
        "memory/cuda_peak_inference_step_bytes": float(inference),
    }
