"""Per-layer diagnostics at bounded cost: gradient and weight norms, activation statistics, symmetry (D2L 5.4).

Logged at step 0 and every ``every_n_steps`` steps, named as PyTorch names what they measure:
``grad_norm/<weight>`` and ``weight_norm/<weight>`` for every weight (a parameter of two or more
dimensions, e.g. ``net.1.weight`` or ``W1``), ``act_mean/<layer>`` and ``act_std/<layer>`` for the
output of every ``nn.Linear`` (e.g. ``net.1``). Activation hooks are attached only for the forward
pass of a logging step, so other steps pay nothing. At the end of each fit, ``distinct_units/<layer>``
counts the hidden units of every hidden layer that differ from one another (D2L 5.4.3).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn


class LayerDiagnostics(L.Callback):
    """Gradient and weight norm of every weight, activation mean/std of every ``nn.Linear``."""

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._stats: dict[str, float] = {}

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if not self._due(trainer):
            return
        for name, layer in linear_layers(pl_module):
            self._handles.append(layer.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):
        def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
            output = output.detach().float()
            self._stats[f"act_mean/{name}"] = output.mean().item()
            self._stats[f"act_std/{name}"] = output.std().item() if output.numel() > 1 else 0.0

        return record

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._remove_hooks()
        if not self._due(trainer):
            return
        for name, weight in pl_module.named_parameters():
            if weight.ndim < 2:
                continue
            if weight.grad is not None:
                self._stats[f"grad_norm/{name}"] = weight.grad.detach().norm().item()
            self._stats[f"weight_norm/{name}"] = weight.detach().norm().item()
        if trainer.logger is not None and self._stats:
            trainer.logger.log_metrics(self._stats, step=trainer.global_step)
        self._stats = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        counts = {f"distinct_units/{name}": float(count) for name, count in distinct_units(pl_module).items()}
        if trainer.logger is not None and counts:
            trainer.logger.log_metrics(counts, step=trainer.global_step)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers of ``module`` with their PyTorch names, input layer first."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]


def distinct_units(module: nn.Module, rtol: float = 1e-5) -> dict[str, int]:
    """For every hidden layer, how many of its units differ: rows of the weight matrix (with the unit's bias)
    that are not equal to an earlier row within ``rtol`` of the layer's largest weight.

    Equal initial weights stay equal under training, so a constant initialisation leaves 1 distinct unit
    per layer, however wide (D2L 5.4.3); a random one, all of them. Hidden layers are every ``nn.Linear``
    but the last (the output), or, for a model without any (``MLPScratch``), every 2-D weight but the last.
    """
    layers = linear_layers(module)
    if layers:
        hidden = [(name, layer.weight, layer.bias) for name, layer in layers[:-1]]
    else:
        weights = [(name, p) for name, p in module.named_parameters() if p.ndim == 2]
        hidden = [(name, weight, None) for name, weight in weights[:-1]]
    counts = {}
    for name, weight, bias in hidden:
        rows = weight.detach().float()
        if bias is not None:
            rows = torch.cat([rows, bias.detach().float().reshape(-1, 1)], dim=1)
        counts[name] = _distinct_rows(rows, rtol * max(1.0, rows.abs().max().item()))
    return counts


def _distinct_rows(rows: torch.Tensor, tolerance: float) -> int:
    """Rows left after merging each into the first earlier row within ``tolerance`` (max-abs difference)."""
    close = torch.cdist(rows, rows, p=float("inf")) <= tolerance
    merged = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
    count = 0
    for i in range(len(rows)):
        if not merged[i]:
            count += 1
            merged |= close[i]
    return count
