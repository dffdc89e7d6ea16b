"""Models a researcher writes in their own package (here, a test module outside ``lit_d2l``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_d2l.models import MLP, Classifier


class ResidualMLP(MLP):
    """An MLP subclass with its own forward: the input's mean added to every logit (a toy skip path)."""

    def forward(self, X: Tensor) -> Tensor:
        return super().forward(X) + X.mean(dim=-1, keepdim=True)


class OwnStepMLP(MLP):
    """An MLP that trains its own way: a pack cannot run its training step."""

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) * 2


class NormalisedMLP(MLP):
    """An MLP with batch normalisation after its first layer (running statistics)."""

    def build(self) -> None:
        super().build()
        self.norm = nn.BatchNorm1d(self.num_inputs)

    def forward(self, X: Tensor) -> Tensor:
        return super().forward(self.norm(X.reshape(len(X), -1)))


class AdamMLP(MLP):
    """An MLP whose own default optimizer is Adam."""

    def default_optimizer(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class InitLayersClassifier(Classifier):
    """Layers created in ``__init__``, as Lightning's documentation writes a module (its shapes known there)."""

    def __init__(self, num_inputs: int = 20, num_outputs: int = 10, hidden: int = 32, **kwargs) -> None:
        super().__init__(num_inputs=num_inputs, num_outputs=num_outputs, **kwargs)
        self.net = nn.Sequential(nn.Linear(num_inputs, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X)


class SmallCNN(Classifier):
    """A convolutional network in the user's own package, its layers made in ``__init__`` as Lightning's
    documentation writes a module: convolution → ReLU → 2×2 max-pooling → dropout → dense, on 1×28×28 images."""

    def __init__(self, num_outputs: int = 10, channels: int = 4, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(num_outputs=num_outputs, **kwargs)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout)
        )
        self.head = nn.Linear(channels * 14 * 14, num_outputs)

    def forward(self, X: Tensor) -> Tensor:
        return self.head(self.features(X.reshape(-1, 1, 28, 28)).flatten(1))


class FunctionalDropoutMLP(MLP):
    """An MLP with dropout written as a function in its forward, not as an ``nn.Dropout`` module."""

    def forward(self, X: Tensor) -> Tensor:
        return super().forward(nn.functional.dropout(X, 0.2, self.training))


class TwiceDropoutMLP(MLP):
    """An MLP whose one dropout module masks its input and its output."""

    def build(self) -> None:
        super().build()
        self.drop = nn.Dropout(0.2)

    def forward(self, X: Tensor) -> Tensor:
        return self.drop(super().forward(self.drop(X)))


class BranchingMLP(MLP):
    """An MLP whose forward branches on a value it computes (data-dependent control flow)."""

    def forward(self, X: Tensor) -> Tensor:
        out = super().forward(X)
        return out / 2 if out.abs().max() > 100 else out


class BrokenMLP(MLP):
    """A researcher's MLP with a bug in its forward: it fails alone as well as packed."""

    def forward(self, X: Tensor) -> Tensor:
        return super().forward(X).reshape(-1, 7)


class MixedPrecisionMLP(MLP):
    """An MLP with one float64 parameter among its float32 ones."""

    def build(self) -> None:
        super().build()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, X: Tensor) -> Tensor:
        return super().forward(X) * self.scale.float()


class ItemMLP(MLP):
    """An MLP whose forward reads a tensor's value as a Python number (``.item()``)."""

    def forward(self, X: Tensor) -> Tensor:
        out = super().forward(X)
        return out * (1.0 if out.abs().max().item() < 100 else 0.5)
