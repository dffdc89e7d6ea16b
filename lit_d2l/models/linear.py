"""Linear regression, from scratch (D2L 3.4) and concise (D2L 3.5), checked against the closed form (D2L 3.1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_d2l.models.base import D2LModule
from lit_d2l.models.sgd import MinibatchSGD


class _LinearModel(D2LModule):
    """What both linear regressions share: shape from the data, and the end-of-fit parameter check."""

    shape_args = ("num_inputs",)

    def __init__(self, num_inputs: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_inputs = num_inputs
        self.fit_errors: dict[str, float] = {}

    def learned(self) -> tuple[Tensor, Tensor]:
        """The learned w (flat) and b (scalar)."""
        raise NotImplementedError

    def end_of_fit_metrics(self, datamodule: Any) -> dict[str, float]:
        """Largest errors against the generating parameters and the closed form, when the data knows them."""
        if not hasattr(datamodule, "true_params"):
            return {}
        X, y = datamodule.splits["train"][:2]
        self.fit_errors = parameter_errors(*self.learned(), *datamodule.true_params(), X, y)
        return self.fit_errors

    def describe(self) -> dict[str, str]:
        w, b = self.learned()
        shown = [round(v, 4) for v in w[:8].tolist()]
        w_text = str(shown) if len(w) <= 8 else f"{str(shown)[:-1]}, ...] ({len(w)} weights, ‖w‖ = {w.norm():.4f})"
        described = {"learned w": w_text, "learned b": f"{b.item():.4f}"}
        return described | {key: f"{value:.2e}" for key, value in self.fit_errors.items()}


class LinearRegression(_LinearModel):
    """``nn.Linear`` with mean squared error and ``torch.optim.SGD`` (D2L 3.5)."""

    def __init__(self, num_inputs: int | None = None, lr: float = 0.03, bias: bool = True, **kwargs: Any) -> None:
        super().__init__(num_inputs, lr=lr, **kwargs)
        self.use_bias = bias

    def build(self) -> None:
        self.net = nn.Linear(self.num_inputs, 1, bias=self.use_bias)
        self.net.weight.data.normal_(0, 0.01)
        if self.net.bias is not None:
            self.net.bias.data.fill_(0)

    def forward(self, X: Tensor) -> Tensor:
        return self.net(X)

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(y_hat, y.reshape(y_hat.shape))

    def learned(self) -> tuple[Tensor, Tensor]:
        bias = self.net.bias.detach().reshape(()) if self.net.bias is not None else torch.zeros(())
        return self.net.weight.detach().reshape(-1), bias


class LinearRegressionScratch(_LinearModel):
    """Explicit w and b, squared loss ½(ŷ − y)² and the SGD update written out (D2L 3.4)."""

    def __init__(
        self,
        num_inputs: int | None = None,
        lr: float = 0.03,
        sigma: float = 0.01,
        l2: float = 0.0,
        init_seed: int | None = None,
    ) -> None:
        super().__init__(num_inputs, lr=lr, l2=l2, init_seed=init_seed)
        self.sigma = sigma

    def build(self) -> None:
        self.w = nn.Parameter(torch.normal(0, self.sigma, (self.num_inputs, 1)))
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, X: Tensor) -> Tensor:
        return X @ self.w + self.b

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        return ((y_hat - y.reshape(y_hat.shape)) ** 2 / 2).mean()

    def default_optimizer(self) -> MinibatchSGD:
        return MinibatchSGD(self.parameters(), self.lr)

    def learned(self) -> tuple[Tensor, Tensor]:
        return self.w.detach().reshape(-1), self.b.detach().reshape(())


def closed_form_solution(X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least squares w*, b* = argmin ‖Xw + b − y‖², solved in float64 (D2L 3.1.1.2).

    The intercept b gets its own column only when no feature is a nonzero constant: when one is (the
    x⁰ feature of polynomial data), that feature already plays the bias and b* = 0, instead of the
    two splitting it. The solver is SVD-based (LAPACK ``gelsd`` on the CPU, as ``numpy.linalg.lstsq``),
    so ill-conditioned features such as high powers of x still get the minimum-norm solution.
    """
    X, y = X.detach().cpu().double(), y.detach().cpu().double().reshape(-1, 1)
    constant = len(X) > 1 and bool(((X.amax(dim=0) == X.amin(dim=0)) & (X[0] != 0)).any())
    design = X if constant else torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y, driver="gelsd").solution.reshape(-1)
    if constant:
        return solution, torch.zeros((), dtype=torch.float64)
    return solution[:-1], solution[-1]


def parameter_errors(w: Tensor, b: Tensor, true_w: Tensor, true_b: float, X: Tensor, y: Tensor) -> dict[str, float]:
    """Largest absolute error against the generating parameters and against the closed-form solution."""
    w, b = w.double().cpu(), b.double().cpu()
    w_star, b_star = closed_form_solution(X.cpu(), y.cpu())
    return {
        "param_err/w": (w - true_w.double()).abs().max().item(),
        "param_err/b": abs(b.item() - true_b),
        "closed_form_gap": torch.cat([w - w_star, (b - b_star).reshape(1)]).abs().max().item(),
    }
