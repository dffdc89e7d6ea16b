"""At the end of a fit, the trained model goes to its MLflow run (``tracking.log_model``), and to the Model
Registry with ``tracking.register_model``."""

from __future__ import annotations

import lightning as L

from lit_d2l.processes import interrupts


class LogModel(L.Callback):
    """Logs the trained module through the Trainer's logger (its ``log_model``), once the fit has ended well:
    not after a divergence or a failure (no ``on_fit_end`` then), nor when a stop signal ended it early."""

    def __init__(self, register_as: str | None = None) -> None:
        self.register_as = register_as

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_model = getattr(trainer.logger, "log_model", None)
        if callable(log_model) and interrupts.requested() is None:
            log_model(pl_module, step=trainer.global_step, register_as=self.register_as)
