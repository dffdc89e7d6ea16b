"""Stop a run whose loss or gradients blow up, and record that as its outcome (D2L 5.4.1)."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor


def why_diverged(bound: float, grad_norm: Tensor | None = None, loss: Tensor | None = None) -> list[str | None]:
    """Per model, why its training has diverged, or None (D2L 5.4.1): a gradient norm that is not finite or
    is above ``bound``, else a loss that is not finite. The tensors hold one value per model: a pack's
    arms, or one model's ``[1]``. The one rule of a single fit (:class:`DivergenceGuard`) and of a pack."""
    given = grad_norm if grad_norm is not None else loss
    assert given is not None, "why_diverged needs a gradient norm or a loss"
    bad = torch.zeros(given.shape, dtype=torch.bool, device=given.device)
    if grad_norm is not None:
        bad |= ~torch.isfinite(grad_norm) | (grad_norm > bound)
    if loss is not None:
        bad |= ~torch.isfinite(loss)
    if not bool(bad.any()):  # one read from the device, the usual answer
        return [None] * len(given)
    norms = grad_norm.tolist() if grad_norm is not None else None
    losses = loss.tolist() if loss is not None else None
    reasons: list[str | None] = []
    for index, diverged in enumerate(bad.tolist()):
        if not diverged:
            reasons.append(None)
        elif norms is not None and not (math.isfinite(norms[index]) and norms[index] <= bound):
            reasons.append(f"gradient norm {norms[index]:.3g} (bound {bound:.3g})")
        else:
            reasons.append(f"loss is {losses[index] if losses is not None else math.nan}")
    return reasons


class Diverged(Exception):
    """Training diverged: a result to record, not a crash. The MLflow run still ends FINISHED."""

    run_status = "FINISHED"  # read by the tracking logger when it closes the run

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"training diverged at step {step}: {reason}")
        self.step, self.reason = step, reason


class DivergenceGuard(L.Callback):
    """Before each optimiser step, check the loss and the total gradient norm (every ``check_every`` steps).

    A NaN/inf loss or gradient norm, or a norm above ``max_grad_norm``, tags the run
    ``outcome=diverged`` with the step and raises :class:`Diverged` before the update is applied.
    """

    def __init__(self, max_grad_norm: float = 1e6, check_every: int = 1) -> None:
        self.max_grad_norm = max_grad_norm
        self.check_every = max(1, check_every)
        self._loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor) and trainer.global_step % self.check_every == 0:
            reason = why_diverged(self.max_grad_norm, loss=loss.detach().float().reshape(1))[0]
            if reason is not None:
                self._stop(trainer, trainer.global_step, reason)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if trainer.global_step % self.check_every:
            return
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        reason = why_diverged(self.max_grad_norm, grad_norm=norm.reshape(1))[0]
        if reason is not None:
            self._stop(trainer, trainer.global_step, reason)

    def _stop(self, trainer: L.Trainer, step: int, reason: str) -> None:
        for logger in trainer.loggers:
            set_tags = getattr(logger, "set_tags", None)
            if callable(set_tags):
                set_tags({"outcome": "diverged", "diverged_at_step": step, "diverged_reason": reason})
        raise Diverged(step, reason)
