"""LeNet-5, the first convolutional network to be deployed at scale, as D2L builds it (D2L 7.6)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lit_d2l.errors import require
from lit_d2l.models.base import Classifier


class LeNet(Classifier):
    """Two convolution + sigmoid + 2×2 average-pooling blocks, then three dense layers, on 1×28×28 images.

    D2L's settings: Xavier-initialised weights, sigmoid activations, lr 0.9 (``experiments/lenet.yaml``).
    ``dropout`` > 0 adds dropout (D2L 5.6) after each hidden dense layer's activation; D2L's LeNet has none.
    """

    shape_args = ("num_outputs",)  # the input is fixed at one 28×28 channel

    def __init__(self, lr: float = 0.9, dropout: float = 0.0, **kwargs: Any) -> None:
        require(0 <= dropout < 1, f"model.dropout must be in [0, 1), got {dropout}")
        super().__init__(lr=lr, **kwargs)
        self.dropout = dropout

    def build(self) -> None:
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            *self._dense(16 * 5 * 5, 120),
            *self._dense(120, 84),
            nn.Linear(84, self.num_outputs),
        )
        for layer in self.net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)

    def _dense(self, fan_in: int, fan_out: int) -> list[nn.Module]:
        """A hidden dense layer: Linear, sigmoid, then dropout when ``dropout`` > 0."""
        return [nn.Linear(fan_in, fan_out), nn.Sigmoid()] + ([nn.Dropout(self.dropout)] if self.dropout else [])

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X.reshape(-1, 1, 28, 28))
