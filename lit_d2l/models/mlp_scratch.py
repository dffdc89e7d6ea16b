"""A one-hidden-layer MLP with forward and backward propagation written by hand (D2L 5.3).

No autograd in training: Lightning's manual optimisation hands us each batch, and the gradients
of J = L + s, s = λ/2 (‖W1‖² + ‖W2‖²), come from the chain rule written out:

    ∂J/∂o = (softmax(o) − onehot(y)) / n     ∂J/∂W2 = (∂J/∂o)ᵀ h + λ W2
    ∂J/∂h = (∂J/∂o) W2                       ∂J/∂z  = ∂J/∂h ⊙ φ′(z)
    ∂J/∂W1 = (∂J/∂z)ᵀ x + λ W1               ∂J/∂b  = Σ over the batch of ∂J/∂(layer output)

(Shapes follow PyTorch: W1 is hidden × inputs, W2 is outputs × hidden, rows are examples.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_d2l.errors import require
from lit_d2l.models import activations
from lit_d2l.models.base import Classifier
from lit_d2l.models.sgd import MinibatchSGD
from lit_d2l.models.softmax import cross_entropy, softmax


class MLPScratch(Classifier):
    """Hand-written forward and backward pass of a 1-hidden-layer MLP with an optional L2 term."""

    def __init__(
        self,
        num_hiddens: int = 256,
        activation: str = "relu",
        sigma: float = 0.01,
        num_inputs: int | None = None,
        num_outputs: int | None = None,
        lr: float = 0.1,
        l2: float = 0.0,
        init_seed: int | None = None,
    ) -> None:
        require(num_hiddens > 0, f"model.num_hiddens must be > 0, got {num_hiddens}")
        super().__init__(num_inputs, num_outputs, lr=lr, l2=l2, init_seed=init_seed)
        self.phi, self.phi_prime = activations.scratch(activation)
        self.num_hiddens, self.activation, self.sigma = num_hiddens, activation, sigma
        # The gradients are computed here, not by autograd: Lightning's manual optimisation.
        self.automatic_optimization = False

    def build(self) -> None:
        # Parameters (so they are saved and moved), but autograd never tracks them.
        trainable = self.world_size() > 1  # see setup
        self.W1 = nn.Parameter(torch.randn(self.num_hiddens, self.num_inputs) * self.sigma, requires_grad=trainable)
        self.b1 = nn.Parameter(torch.zeros(self.num_hiddens), requires_grad=trainable)
        self.W2 = nn.Parameter(torch.randn(self.num_outputs, self.num_hiddens) * self.sigma, requires_grad=trainable)
        self.b2 = nn.Parameter(torch.zeros(self.num_outputs), requires_grad=trainable)

    def setup(self, stage: str) -> None:
        """Under DDP the parameters are marked as requiring gradients, because DDP wraps only a module
        that has such parameters; autograd still never runs on them (training computes under no_grad,
        so DDP's own gradient hooks never fire) and :meth:`training_step` averages the hand-computed
        gradients over the processes itself."""
        if self.world_size() > 1:
            for parameter in self.parameters():
                parameter.requires_grad_(True)

    def world_size(self) -> int:
        """Processes training together (1 outside a Trainer)."""
        try:
            return self.trainer.world_size
        except RuntimeError:  # not attached to a Trainer
            return 1

    def forward(self, X: Tensor) -> Tensor:
        return self.propagate(X)[-1]

    def propagate(self, X: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Forward pass keeping what backprop needs: x (flattened), z, h and the logits o."""
        x = X.reshape(len(X), -1)
        z = x @ self.W1.T + self.b1
        h = self.phi(z)
        return x, z, h, h @ self.W2.T + self.b2

    def named_variables(self, X: Tensor) -> dict[str, Tensor]:
        """The forward pass's intermediate variables by D2L's names (5.3.1), for the computation graph."""
        _, z, h, o = self.propagate(X)
        return {"z": z, "h": h, "o": o}

    def gradients(self, X: Tensor, y: Tensor) -> dict[str, Tensor]:
        """∂J/∂θ for every parameter, by the chain rule written out (no autograd)."""
        x, z, h, o = self.propagate(X)
        dJ_do = (softmax(o) - F.one_hot(y, o.shape[1]).to(o.dtype)) / len(x)
        dJ_dz = (dJ_do @ self.W2) * self.phi_prime(z)
        return {
            "W2": dJ_do.T @ h + self.l2 * self.W2,
            "b2": dJ_do.sum(dim=0),
            "W1": dJ_dz.T @ x + self.l2 * self.W1,
            "b1": dJ_dz.sum(dim=0),
        }

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        X, y = batch
        optimizer = self.optimizers()
        with torch.no_grad():
            data_loss = cross_entropy(self(X), y)
            objective = self.with_penalty(data_loss)  # J = L + λ/2 (‖W1‖² + ‖W2‖²)
            for name, grad in self.gradients(X, y).items():
                if self.world_size() > 1:  # each rank's batch mean → the global batch's (equal shares)
                    grad = self.trainer.strategy.reduce(grad, reduce_op="mean")
                getattr(self, name).grad = grad
        optimizer.step()  # MinibatchSGD: θ ← θ − η·grad, written out
        optimizer.zero_grad()
        self.log_train_loss(objective, data_loss)
        return objective

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        scheduler = self.lr_schedulers()  # manual optimisation steps its own schedule
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if "val/loss" in self.trainer.callback_metrics:
                scheduler.step(self.trainer.callback_metrics["val/loss"])
        elif scheduler is not None:
            scheduler.step()

    def default_optimizer(self) -> MinibatchSGD:
        return MinibatchSGD(self.parameters(), self.lr)
