"""Stop a run whose loss or gradients blow up, and record that as its outcome (D2L 5.4.1)."""

from __future__ import annotations

import math

import lightning as L
import torch


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
        if isinstance(loss, torch.Tensor) and trainer.global_step % self.check_every == 0:
            value = loss.detach().float().item()
            if not math.isfinite(value):
                self._stop(trainer, trainer.global_step, f"loss is {value}")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if trainer.global_step % self.check_every:
            return
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        if not math.isfinite(norm) or norm > self.max_grad_norm:
            self._stop(trainer, trainer.global_step, f"gradient norm {norm:.3g} (bound {self.max_grad_norm:.3g})")

    def _stop(self, trainer: L.Trainer, step: int, reason: str) -> None:
        for logger in trainer.loggers:
            set_tags = getattr(logger, "set_tags", None)
            if callable(set_tags):
                set_tags({"outcome": "diverged", "diverged_at_step": step, "diverged_reason": reason})
        raise Diverged(step, reason)
