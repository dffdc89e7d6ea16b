"""The LightningModules every lit-d2l model builds on (D2L 3.2.2's ``Module``, 4.3's ``Classifier``).

Plain LightningModules: automatic optimisation, ``training_step`` returns the loss, metrics go
through ``self.log`` and torchmetrics, so every documented Lightning hook, callback and CLI
option (``--optimizer``, ``--lr_scheduler``) applies to them as the Lightning docs say.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_class
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lit_d2l.errors import ConfigError, require
from lit_d2l.seeding import stream_seed

#: A class config as LightningCLI's ``--optimizer`` / ``--lr_scheduler`` give it: class_path + init_args.
ClassConfig = dict[str, Any]


class D2LModule(L.LightningModule):
    """Loss, minibatch SGD, weight decay / L2 penalty, and lit-d2l's metric names.

    ``train/loss`` is the objective J = L + λ/2·Σ‖W‖² (λ = ``l2``), logged every
    ``trainer.log_every_n_steps`` steps; ``train/loss_epoch`` is its mean over each epoch, and
    ``train/loss_data`` the epoch mean of L alone when a penalty is on.
    ``val/loss`` and ``test/loss`` are the data loss L alone, averaged over every example of the
    split. ``weight_norm`` (‖W‖ over all weights) is logged per epoch. Epoch-level metrics are averaged over
    all DDP ranks. "Weights" are the parameters with two or more dimensions; biases are never
    decayed or penalised (D2L 3.7).

    ``init_seed`` pins the parameters' initialisation; by default its stream is derived from
    ``seed_everything``, independent of the data's and of dropout's (:mod:`lit_d2l.seeding`).

    Layers are created in :meth:`configure_model` (Lightning calls it before training), so shapes
    may come from the DataModule and a subclass may set its own attributes after
    ``super().__init__()``. Outside a Trainer, build it once first: ``net = built(MLP(...))``.
    """

    #: Constructor arguments that, left as None, are read from the DataModule in configure_model.
    shape_args: tuple[str, ...] = ()

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        init_seed: int | None = None,
    ) -> None:
        super().__init__()
        # NaN fails every comparison; infinity (YAML .inf, or 1e309) is caught by isfinite.
        require(lr > 0 and math.isfinite(lr), f"model.lr must be > 0 and finite, got {lr}")
        require(0 <= momentum < 1, f"model.momentum must be in [0, 1), got {momentum}")
        require(
            weight_decay >= 0 and math.isfinite(weight_decay),
            f"model.weight_decay must be >= 0 and finite, got {weight_decay}",
        )
        require(l2 >= 0 and math.isfinite(l2), f"model.l2 must be >= 0 and finite, got {l2}")
        require(
            init_seed is None or not self.made_layers_in_init(),
            f"model.init_seed {init_seed} pins layers made in build(), but {type(self).__name__} makes its layers in "
            "__init__, from seed_everything's stream: set seed_everything, or make them in build()",
        )
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.l2 = l2
        self.init_seed = init_seed
        # Every constructor argument of the subclass chain (Lightning walks the __init__ frames). Shapes
        # are added once resolved (configure_model): left out here, a None would clash with the
        # DataModule's value when Lightning merges both for logging.
        self.save_hyperparameters(ignore=["num_inputs", "num_outputs", *self.shape_args])
        self.optimizer_config: ClassConfig | None = None
        self.lr_scheduler_config: ClassConfig | None = None
        # NaN kept, not dropped: a diverging epoch must show as NaN, not as the mean of its finite steps.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_data_loss = MeanMetric(nan_strategy="disable")  # L alone, when a penalty is on
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        for running in (self.train_loss, self.train_data_loss):  # in checkpoints: a fit resumed mid-epoch
            running.persistent(True)  # continues its epoch's mean
        self.layers_built = False

    # -- the model ----------------------------------------------------------------------------

    def build(self) -> None:
        """Create the layers whose shapes come from the data; every shape in :attr:`shape_args` is set by now.

        A model whose shapes are known in ``__init__`` may create its layers there, as Lightning's
        documentation writes modules, and define no ``build``.
        """
        if any(True for _ in self.parameters()):  # layers made in __init__: nothing left to build
            return
        raise NotImplementedError(
            f"{type(self).__name__} has no layers: create them in __init__, or in build() when their shapes "
            "come from the data"
        )

    def configure_model(self) -> None:
        """Fill in shapes left to the data, then :meth:`build` once (Lightning may call this hook again)."""
        if self.layers_built:
            return
        for name in self.shape_args:
            if getattr(self, name) is None:
                setattr(self, name, self.datamodule_attr(name))
        self.hparams.update({name: getattr(self, name) for name in self.shape_args})
        seed = self.initialisation_seed()
        if seed is None:
            self.build()
        else:  # its own stream, leaving the global one (dropout) where seed_everything put it
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.build()
        self.layers_built = True

    def initialisation_seed(self) -> int | None:
        """``init_seed`` if pinned, else derived from the run's seed_everything; None when there is none, or when
        ``__init__`` made the layers (seed_everything's stream initialised them as the model was made)."""
        return None if self.made_layers_in_init() else stream_seed("init", self.init_seed)

    def made_layers_in_init(self) -> bool:
        """Whether ``__init__`` makes the layers: a model that defines no :meth:`build` (as Lightning's docs do)."""
        return type(self).build is D2LModule.build

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """The data loss L of one minibatch; a subclass defines it (``Classifier``: cross-entropy)."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(y_hat, y), e.g. mean squared error")

    def weights(self) -> dict[str, Tensor]:
        """The parameters that weight decay and the L2 penalty apply to."""
        return {name: p for name, p in self.named_parameters() if p.ndim > 1}

    def l2_penalty(self, l2: float | Tensor | None = None) -> Tensor:
        """λ/2 · Σ‖W‖² over the weights (D2L 3.7.2); λ is ``l2`` when given (a packed arm's), else the model's."""
        l2 = self.l2 if l2 is None else l2
        return l2 / 2 * sum((w**2).sum() for w in self.weights().values())

    def objectives(self, batch: tuple[Tensor, ...], l2: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(J, L) on one minibatch: the data loss L and the objective J = L + λ/2·Σ‖W‖² (D2L 5.3).

        The one definition both paths train on: a single fit's training step calls it, and a pack calls it
        for every arm at once through ``torch.func`` (``l2`` then that arm's λ, a tensor).
        """
        data_loss = self.loss(self(*batch[:-1]), batch[-1])
        return self.with_penalty(data_loss, l2), data_loss

    def with_penalty(self, data_loss: Tensor, l2: float | Tensor | None = None) -> Tensor:
        """J from L: the data loss plus λ/2·Σ‖W‖² when a penalty is on (exactly L where λ = 0)."""
        l2 = self.l2 if l2 is None else l2
        if isinstance(l2, Tensor):  # a packed arm's λ: no Python branch on a value under torch.func
            return torch.where(l2 > 0, data_loss + self.l2_penalty(l2), data_loss)
        return data_loss + self.l2_penalty(l2) if l2 else data_loss

    # -- training, validation, testing ----------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        objective, data_loss = self.objectives(batch)
        self.log_train_loss(objective, data_loss)
        return objective

    def log_train_loss(self, objective: Tensor, data_loss: Tensor | None = None) -> None:
        """``train/loss`` (J) for this step, and the step's share of the epoch means ``train/loss_epoch``
        (J) and, when a penalty is on, ``train/loss_data`` (L alone, comparable with ``val/loss``)."""
        objective = objective.detach()
        self.log("train/loss", objective, prog_bar=True)
        self.train_loss.update(objective)
        if self.l2 and data_loss is not None:
            self.train_data_loss.update(data_loss.detach())

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metric("train/loss_epoch", self.train_loss)
        self.log_epoch_metric("train/loss_data", self.train_data_loss)
        weights = [weight.detach() for weight in self.weights().values()]
        if weights:  # ‖W‖ over all weights, one metric however deep (D2L 4.5's "L2 norm of w")
            # Equal on every DDP rank; sync_dist only spares Lightning's warning about unsynced epoch values.
            self.log("weight_norm", torch.sqrt(sum((w**2).sum() for w in weights)), sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.evaluate_batch("val", batch)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.evaluate_batch("test", batch)

    def evaluate_batch(self, split: str, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """Add a minibatch to ``split``'s epoch loss (``val``, ``test``); returns (outputs, targets)."""
        output, y = self(*batch[:-1]), batch[-1]
        add_batch_mean(getattr(self, f"{split}_loss"), self.loss(output, y), len(y))
        return output, y

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metric("val/loss", self.val_loss, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metric("test/loss", self.test_loss)

    def log_epoch_metric(self, name: str, metric: Any, prog_bar: bool = False) -> None:
        """Log a torchmetrics metric's value over the whole epoch (all DDP ranks), then reset it.

        Nothing is logged when the metric saw no update (say, a subclass's own step logs other names).
        """
        if metric.update_count:
            # compute() already reduced over the ranks; sync_dist only spares Lightning's warning under DDP.
            self.log(name, metric.compute(), prog_bar=prog_bar, sync_dist=True)
        metric.reset()

    # -- optimisation -------------------------------------------------------------------------

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Weights and biases as two named groups; the biases never decay (D2L 3.7.4), the weights take
        the optimizer's ``weight_decay``."""
        weights = self.weights()
        groups = [
            {"name": "weights", "params": list(weights.values())},
            {
                "name": "biases",
                "params": [p for name, p in self.named_parameters() if name not in weights],
                "weight_decay": 0.0,
            },
        ]
        return [group for group in groups if group["params"]]

    def default_optimizer(self) -> torch.optim.Optimizer:
        """Minibatch SGD with the model's ``lr``, ``momentum`` and ``weight_decay`` (D2L 3.4.3, 3.7.4)."""
        return torch.optim.SGD(
            self.parameter_groups(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    def configure_optimizers(self) -> Any:
        """The model's SGD, or the ``--optimizer`` / ``--lr_scheduler`` given on the command line.

        A configured optimizer gets the same two parameter groups, its own settings (``lr``,
        ``weight_decay``, ...) for the weights and no weight decay for the biases. A scheduler
        steps once an epoch (``ReduceLROnPlateau`` watches ``val/loss``).
        """
        if self.optimizer_config is None:
            optimizer = self.default_optimizer()
        else:
            optimizer = instantiate_class(self.parameter_groups(), self.optimizer_config)
        if self.lr_scheduler_config is None:
            return optimizer
        scheduler = instantiate_class(optimizer, self.lr_scheduler_config)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def use_optimizer(self, optimizer: ClassConfig | None = None, lr_scheduler: ClassConfig | None = None) -> None:
        """Train with this optimizer and/or LR scheduler (class_path + init_args, as LightningCLI parses them)."""
        self.optimizer_config, self.lr_scheduler_config = optimizer, lr_scheduler

    # -- helpers --------------------------------------------------------------------------------

    def datamodule_attr(self, name: str) -> Any:
        """An attribute of the attached DataModule (e.g. ``num_inputs``), for shapes left to the data."""
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # not attached to a Trainer
            datamodule = None
        if not hasattr(datamodule, name):
            raise ConfigError(f"{type(self).__name__} needs model.{name}: set it, or use a DataModule that provides it")
        return getattr(datamodule, name)

    def on_fit_end(self) -> None:
        """Log :meth:`end_of_fit_metrics` once the fit has ended (a pack logs each arm's from its own model)."""
        values = self.end_of_fit_metrics(self.trainer.datamodule)
        for logger in self.loggers if values else ():  # after the fit loop, where self.log is not allowed
            logger.log_metrics(values, step=self.global_step)

    def end_of_fit_metrics(self, datamodule: Any) -> dict[str, float]:
        """Metrics a model logs once its fit ends (e.g. the linear models' distance to the closed form)."""
        return {}

    def describe(self) -> dict[str, str]:
        """Human-readable results (e.g. ``{"learned w": "[2.0, -3.4]"}``), printed by the CLI at the end."""
        return {}


def add_batch_mean(metric: MeanMetric, batch_mean: Tensor, count: int) -> None:
    """Add a minibatch's mean loss to an epoch mean as ``count`` examples, so the epoch's value is the mean
    over every example of the split, whatever the size of the last batch.

    The value is repeated rather than passed as ``weight``: torchmetrics (1.9) drops the weight of a
    ``MeanMetric`` built with ``nan_strategy="disable"``, which would average the batch means instead.
    """
    metric.update(batch_mean.detach().reshape(()).expand(count))


Model = TypeVar("Model", bound=D2LModule)


def built(model: Model, datamodule: Any = None) -> Model:
    """``model`` with its layers created, for use outside a Trainer; shapes left as None are read from
    ``datamodule`` when one is given.

    ``net = built(MLP(num_inputs=784, num_outputs=10))``; a Trainer calls ``configure_model`` itself.
    """
    if datamodule is not None:
        for name in model.shape_args:
            if getattr(model, name) is None and hasattr(datamodule, name):
                setattr(model, name, getattr(datamodule, name))
    model.configure_model()
    return model


class Classifier(D2LModule):
    """Cross-entropy on logits, plus ``val/acc`` and ``test/acc`` (D2L 4.3).

    Shapes left as None (``num_inputs``, ``num_outputs``) come from the DataModule.
    """

    shape_args = ("num_inputs", "num_outputs")

    def __init__(self, num_inputs: int | None = None, num_outputs: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_inputs, self.num_outputs = num_inputs, num_outputs

    def configure_model(self) -> None:
        if self.layers_built:
            return
        super().configure_model()
        self.val_acc = MulticlassAccuracy(self.num_outputs, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_outputs, average="micro")

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, y)

    def evaluate_batch(self, split: str, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The loss as :meth:`D2LModule.evaluate_batch` adds it, and the accuracy."""
        logits, y = super().evaluate_batch(split, batch)
        getattr(self, f"{split}_acc").update(logits, y)
        return logits, y

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log_epoch_metric("val/acc", self.val_acc, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log_epoch_metric("test/acc", self.test_acc)


def check_distributable(model: Any) -> None:
    """Refuse, in one line, a model that cannot train on several processes (its ``ddp_refusal`` says why)."""
    reason = getattr(model, "ddp_refusal", None)
    if reason:
        raise ConfigError(f"{type(model).__name__} cannot train on several processes: {reason}")
