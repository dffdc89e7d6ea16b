"""LeNet-5, the first convolutional network to be deployed at scale, as D2L builds it (D2L 7.6)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lit_d2l.models.base import Classifier


class LeNet(Classifier):
    """Two convolution + sigmoid + 2×2 average-pooling blocks, then three dense layers, on 1×28×28 images.

    D2L's settings: Xavier-initialised weights, sigmoid activations, lr 0.9 (``experiments/lenet.yaml``).
    """

    shape_args = ("num_outputs",)  # the input is fixed at one 28×28 channel

    def __init__(self, lr: float = 0.9, **kwargs: Any) -> None:
        super().__init__(lr=lr, **kwargs)

    def build(self) -> None:
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, self.num_outputs),
        )
        for layer in self.net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X.reshape(-1, 1, 28, 28))
