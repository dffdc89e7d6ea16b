"""The LightningModules every lit-d2l model builds on (D2L 3.2.2's ``Module``, 4.3's ``Classifier``)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_d2l.errors import ConfigError, require

_STEP_HOOKS = ("training_step", "validation_step", "test_step")


def _precompute_step_signatures(cls: type) -> None:
    """Lightning inspects the step methods' signatures on every step (does it take ``batch_idx``?).

    ``inspect`` returns a function's ``__signature__`` when it has one, so computing it once per
    class turns that per-step parse into an attribute lookup. The signature is the real one.
    """
    for name in _STEP_HOOKS:
        function = cls.__dict__.get(name)
        if callable(function) and "__signature__" not in function.__dict__:
            function.__signature__ = inspect.signature(function)


class D2LModule(L.LightningModule):
    """Loss, minibatch SGD, weight decay / L2 penalty, and lit-d2l's metric names.

    ``train/loss`` is the objective J = L + λ/2·Σ‖W‖² (λ = ``l2``) logged every step (rank 0's
    batch; every ``trainer.log_every_n_steps``); ``train/loss_epoch`` is its mean over each epoch.
    ``weight_norm/<name>`` is logged per epoch. ``val/loss`` and ``test/loss`` are the
    data loss L alone. Epoch-level metrics are averaged over all DDP ranks. "Weights" are the
    parameters with two or more dimensions; biases are never decayed or penalised (D2L 3.7).
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0, l2: float = 0.0) -> None:
        super().__init__()
        require(lr > 0, f"model.lr must be > 0, got {lr}")
        require(0 <= momentum < 1, f"model.momentum must be in [0, 1), got {momentum}")
        require(weight_decay >= 0, f"model.weight_decay must be >= 0, got {weight_decay}")
        require(l2 >= 0, f"model.l2 must be >= 0, got {l2}")
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.l2 = l2
        # A plain list: nn.Module.__setattr__ would cost more than the bookkeeping itself, every step.
        self._epoch_losses: list[Tensor] = []
        self._eval_loss: dict[str, tuple[Any, int]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _precompute_step_signatures(cls)

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's, leaving out shapes still left to the data (``num_inputs=None``).

        Those are filled in by ``configure_model``; recorded as None they would clash with the
        DataModule's own ``num_inputs`` when Lightning merges both for logging.
        """
        frame = frame or inspect.currentframe().f_back
        unset = [
            name for name in ("num_inputs", "num_outputs") if name in frame.f_locals and frame.f_locals[name] is None
        ]
        ignore = [*([ignore] if isinstance(ignore, str) else ignore or []), *unset]
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook: ~45 times a step. It is a plain
        # string, never a parameter, buffer or submodule, so nn.Module's checks (two metaclass
        # isinstance calls each) can be skipped; they were a quarter of Lightning's per-step cost.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, Tensor]:
        """The parameters that weight decay and the L2 penalty apply to."""
        return {name: p for name, p in self.named_parameters() if p.ndim > 1}

    def l2_penalty(self) -> Tensor:
        """λ/2 · Σ‖W‖² over the weights (D2L 3.7.2)."""
        return self.l2 / 2 * sum((w**2).sum() for w in self.weights().values())

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.loss(self(*batch[:-1]), batch[-1])
        if self.l2:
            loss = loss + self.l2_penalty()
        self.record_train_loss(loss)
        if self._explicit_step:
            self.sgd_step(loss)
        return loss

    # -- the optimisation step ------------------------------------------------------------------

    #: Take each minibatch SGD step in ``training_step``, as D2L's own training loop does (3.4.4),
    #: whenever the fit needs nothing of Lightning's automatic optimisation (see :meth:`on_fit_start`).
    explicit_step: bool = True
    _explicit_step: bool = False  # decided per fit

    @property
    def automatic_optimization(self) -> bool:
        """Lightning's automatic optimisation, unless this fit takes its SGD steps explicitly."""
        return self._automatic_optimization and not self._explicit_step

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    def on_fit_start(self) -> None:
        """Choose how this fit steps: explicitly (zero_grad, backward, step in ``training_step``) when
        the Trainer asks for no gradient clipping, accumulation or LR schedule and there is one
        optimizer; else through Lightning's automatic optimisation. Same updates either way
        (tested); the explicit step skips Lightning's closure and per-step optimisation hooks, a
        quarter of its per-step cost (benchmarks/RESULTS.md)."""
        trainer = self.trainer
        self._explicit_step = (
            self.explicit_step
            and self._automatic_optimization
            and not trainer.gradient_clip_val
            and trainer.accumulate_grad_batches == 1
            and not trainer.lr_scheduler_configs
            and len(trainer.optimizers) == 1
            and not any(isinstance(callback, GradientAccumulationScheduler) for callback in trainer.callbacks)
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume the step count whichever way the checkpoint's fit stepped.

        Lightning counts explicit (manual) and automatic optimizer steps apart and ``global_step``
        reads the counter of the current mode, so a fit resumed in the other mode (say, with
        gradient clipping added) would restart at step 0. Both counters get the steps taken.
        """
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
        explicit = loop.get("epoch_loop.manual_optimization.optim_step_progress")
        if not (automatic and explicit):
            return
        taken = max((automatic, explicit), key=lambda progress: progress["total"]["completed"])
        for progress in (automatic, explicit):
            if progress is not taken:
                progress.update(copy.deepcopy(taken))

    def sgd_step(self, loss: Tensor) -> None:
        """One minibatch SGD update through Lightning's optimizer wrapper (precision, DDP and the
        ``on_before_optimizer_step`` hooks still apply)."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def record_train_loss(self, loss: Tensor) -> None:
        """Log this step's ``train/loss`` and add it to the epoch's mean.

        Straight to the logger rather than through ``self.log``: Lightning's per-call bookkeeping
        cost more than a whole SGD step of softmax regression. The value stays a tensor (no device
        sync) until the logger writes its batch.
        """
        loss = loss.detach()
        self._epoch_losses.append(loss)  # summed once at the epoch's end, not one tensor op a step
        trainer = self._trainer
        logger = trainer.logger if trainer is not None else None
        if logger is None:
            return
        step = trainer.global_step
        if step % trainer.log_every_n_steps == 0:
            value = loss if getattr(logger, "accepts_tensors", False) else loss.item()
            logger.log_metrics({"train/loss": value}, step=step)

    def on_train_epoch_start(self) -> None:
        self._epoch_losses.clear()

    def on_train_epoch_end(self) -> None:
        if self._epoch_losses:
            mean = torch.stack(self._epoch_losses).float().mean()
            self._epoch_losses.clear()
            self.log("train/loss_epoch", mean, prog_bar=True, sync_dist=True)
        for name, weight in self.weights().items():
            # Equal on every DDP rank; the (once an epoch) mean over ranks only spares Lightning's warning.
            self.log(f"weight_norm/{name}", weight.detach().norm(), sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.accumulate_loss("val", self.loss(self(*batch[:-1]), batch[-1]), len(batch[-1]))

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.accumulate_loss("test", self.loss(self(*batch[:-1]), batch[-1]), len(batch[-1]))

    def accumulate_loss(self, stage: str, loss: Tensor, batch_size: int) -> None:
        """Add a batch's mean loss to the stage's sum; the mean over all examples is logged at epoch end.

        One ``self.log`` per epoch instead of one per batch (each call costs ~0.5 ms in Lightning).
        """
        total, count = self._eval_loss.get(stage, (0.0, 0))
        self._eval_loss[stage] = (total + loss.detach() * batch_size, count + batch_size)

    def log_eval_loss(self, stage: str) -> None:
        total, count = self._eval_loss.pop(stage, (0.0, 0))
        if count:
            self.log(f"{stage}/loss", total / count, prog_bar=stage == "val", sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._eval_loss.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self.log_eval_loss("val")

    def on_test_epoch_start(self) -> None:
        self._eval_loss.pop("test", None)

    def on_test_epoch_end(self) -> None:
        self.log_eval_loss("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        weight_ids = {id(w) for w in self.weights().values()}
        groups = [
            {"params": [p for p in self.parameters() if id(p) in weight_ids], "weight_decay": self.weight_decay},
            {"params": [p for p in self.parameters() if id(p) not in weight_ids], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum)

    def datamodule_attr(self, name: str) -> Any:
        """An attribute of the attached DataModule (e.g. ``num_inputs``), for shapes left to the data."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if not hasattr(datamodule, name):
            raise ConfigError(f"{type(self).__name__} needs model.{name}: set it, or use a DataModule that provides it")
        return getattr(datamodule, name)

    def describe(self) -> dict[str, str]:
        """Human-readable results (e.g. ``{"learned w": "[2.0, -3.4]"}``), printed by the CLI at the end."""
        return {}


_precompute_step_signatures(D2LModule)


class Classifier(D2LModule):
    """Cross-entropy on logits, plus ``val/acc`` and ``test/acc`` (D2L 4.3).

    Shapes left as None (``num_inputs``, ``num_outputs``) come from the DataModule; subclasses
    create their layers in :meth:`build`.
    """

    def __init__(
        self,
        num_inputs: int | None = None,
        num_outputs: int | None = None,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay, l2=l2)
        self.num_inputs, self.num_outputs = num_inputs, num_outputs
        self._built = False
        if num_inputs is not None and num_outputs is not None:
            self.configure_model()

    def build(self, num_inputs: int, num_outputs: int) -> None:
        raise NotImplementedError

    def configure_model(self) -> None:
        if self._built:
            return
        self.num_inputs = self.num_inputs or self.datamodule_attr("num_inputs")
        self.num_outputs = self.num_outputs or self.datamodule_attr("num_outputs")
        self.hparams.update(num_inputs=self.num_inputs, num_outputs=self.num_outputs)
        self.build(self.num_inputs, self.num_outputs)
        self.val_acc = MulticlassAccuracy(self.num_outputs, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_outputs, average="micro")
        self._built = True

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        X, y = batch
        logits = self(X)
        self.accumulate_loss("val", self.loss(logits, y), len(y))
        self.val_acc.update(logits, y)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        X, y = batch
        logits = self(X)
        self.accumulate_loss("test", self.loss(logits, y), len(y))
        self.test_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)  # compute() gathers all DDP ranks
        self.val_acc.reset()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/acc", self.test_acc.compute())
        self.test_acc.reset()
