"""SGD, Adam and AdamW, and the StepLR and CosineAnnealingLR schedules, for a pack of arms (D2L 3.4.3, 12.10, 12.11).

One update of every arm's parameters at once, each arm with its own settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.cli import instantiate_class
from torch import Tensor


class PackedOptimizer(torch.optim.Optimizer):
    """An optimizer for a pack of arms: every parameter carries the arm axis first, every hyperparameter is
    a vector over the arms, and arm k takes exactly the step torch's optimizer takes for it alone.

    ``settings()`` returns the current vectors by name (float64, as torch's optimizers hold Python floats)
    and ``active``: None when every arm steps, else a boolean vector; an inactive (diverged) arm is left
    exactly as it is, whatever its gradient holds. Subclasses define :meth:`update` for one parameter, with
    the fused operations torch's optimizers use (``addcmul`` for a + α·b, ``lerp``, ``addcdiv``), so that an
    arm's step is torch's bit for bit given the same gradient.
    """

    def __init__(self, groups: Iterable[dict[str, Any]], settings: Callable[[], dict[str, Tensor | None]]) -> None:
        super().__init__(list(groups), {"decay": False})
        self.settings = settings

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        settings = self.settings()
        active = settings.pop("active", None)
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                shape = (-1,) + (1,) * (param.ndim - 1)
                keep = None if active is None else active.view(shape)
                grad = param.grad if keep is None else torch.where(keep, param.grad, 0.0)
                arm = {name: value.view(shape) for name, value in settings.items()}
                new = self.update(param, grad, group, self.state[param], arm, keep)
                param.copy_(new if keep is None else torch.where(keep, new, param))
        return loss


def _as(value: Tensor, like: Tensor) -> Tensor:
    """A float64 setting rounded to the parameter's dtype, as torch rounds a Python float it multiplies by."""
    return value.to(like.dtype)


class PackedSGD(PackedOptimizer):
    """Minibatch SGD with momentum and weight decay (D2L 3.4.3, 12.6), each arm its own (lr, momentum,
    weight_decay): the step ``torch.optim.SGD`` (or lit-d2l's ``MinibatchSGD``) takes for that arm alone,

        d = grad + wd_k · θ   (weights only)        b ← m_k · b + d        θ ← θ − lr_k · b

    A group with ``"momentum": False`` (no arm uses momentum) keeps no momentum buffer.
    """

    def update(self, param, grad, group, state, arm, keep) -> Tensor:
        direction = torch.addcmul(grad, param, _as(arm["weight_decay"], param)) if group["decay"] else grad
        if "momentum_buffer" in state or group.get("momentum", True):
            buffer = state.setdefault("momentum_buffer", torch.zeros_like(param))
            new_buffer = buffer * _as(arm["momentum"], param) + direction
            buffer.copy_(new_buffer if keep is None else torch.where(keep, new_buffer, buffer))
            direction = new_buffer
        return torch.addcmul(param, direction, _as(-arm["lr"], param))


class PackedAdam(PackedOptimizer):
    """Adam and AdamW (D2L 12.10), each arm its own (lr, beta1, beta2, eps, weight_decay): the step
    ``torch.optim.Adam`` (``decoupled`` False: weight decay added to the gradient) or ``torch.optim.AdamW``
    (``decoupled`` True: θ ← θ·(1 − lr_k·wd_k)) takes for that arm alone, in torch's own order of operations,

        m ← β1_k·m + (1 − β1_k)·g     v ← β2_k·v + (1 − β2_k)·g²
        θ ← θ − lr_k/(1 − β1_kᵗ) · m / (√v/√(1 − β2_kᵗ) + ε_k)

    Weight decay applies to groups with ``"decay": True`` (weights, never biases); an arm's clock stops while
    it is inactive.
    """

    def __init__(
        self, groups: Iterable[dict[str, Any]], settings: Callable[[], dict[str, Tensor | None]], decoupled: bool
    ) -> None:
        super().__init__(groups, settings)
        self.decoupled = decoupled

    def update(self, param, grad, group, state, arm, keep) -> Tensor:
        if not state:
            state["step"] = torch.zeros(len(param), dtype=torch.float64, device=param.device)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"].add_(1.0 if keep is None else keep.view(-1).to(torch.float64))
        lr, beta1, beta2, decay = arm["lr"], arm["beta1"], arm["beta2"], arm["weight_decay"]
        new = param
        if group["decay"]:
            if self.decoupled:
                new = param * _as(1 - lr * decay, param)
            else:
                grad = torch.addcmul(grad, param, _as(decay, param))
        exp_avg = state["exp_avg"].lerp(grad, _as(1 - beta1, param))
        exp_avg_sq = torch.addcmul(state["exp_avg_sq"] * _as(beta2, param), _as(1 - beta2, param) * grad, grad)
        step = state["step"].clamp(min=1).view(lr.shape)
        denom = exp_avg_sq.sqrt() / _as((1 - beta2**step) ** 0.5, param) + _as(arm["eps"], param)
        new = torch.addcdiv(new, _as(-lr / (1 - beta1**step), param) * exp_avg, denom)
        for name, value in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
            state[name] = value if keep is None else torch.where(keep, value, state[name])
        return new


#: The optimizers a pack restates, by class path, and the settings each arm may hold its own value of.
PACKED_OPTIMIZERS = {"torch.optim.SGD": "sgd", "torch.optim.Adam": "adam", "torch.optim.AdamW": "adamw"}
#: The settings of Adam and AdamW each arm holds its own value of.
ADAM_SETTINGS = ("lr", "beta1", "beta2", "eps", "weight_decay")
#: Variants a pack does not restate: set to anything but off, the arm trains alone.
_UNSUPPORTED = ("nesterov", "dampening", "amsgrad", "maximize")


def arm_optimizer(model: Any) -> tuple[str, dict[str, float]]:
    """(kind: sgd, adam or adamw; its settings) of the optimizer ``model`` trains with alone: its
    ``--optimizer`` (as torch builds it, defaults included) if one is configured, else its own SGD."""
    config = getattr(model, "optimizer_config", None)
    if config is None:
        return "sgd", {"lr": model.lr, "momentum": model.momentum, "weight_decay": model.weight_decay}
    settings = instantiate_class(_probe(), config).defaults
    kind = PACKED_OPTIMIZERS[config["class_path"]]
    if kind == "sgd":
        return kind, {key: float(settings[key]) for key in ("lr", "momentum", "weight_decay")}
    beta1, beta2 = settings["betas"]
    values = (settings["lr"], beta1, beta2, settings["eps"], settings["weight_decay"])
    adamw = kind == "adamw" or settings.get("decoupled_weight_decay")
    return "adamw" if adamw else kind, dict(zip(ADAM_SETTINGS, map(float, values), strict=True))


def _probe() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(1))]


def why_optimizer_not_packable(optimizer: dict[str, Any] | None) -> str | None:
    """None when a pack can restate the configured ``--optimizer`` (SGD, Adam, AdamW), else why not."""
    if optimizer is None:
        return None
    path = optimizer.get("class_path", "")
    if path not in PACKED_OPTIMIZERS:
        return f"--optimizer {path.rsplit('.', 1)[-1]} (a pack runs SGD, Adam and AdamW)"
    args = optimizer.get("init_args") or {}
    for key in _UNSUPPORTED:
        if args.get(key):
            name = path.rsplit(".", 1)[-1]
            return f"--optimizer.{key} is set (a pack runs {name} without {key})"
    return None


#: The LR schedules a pack restates per arm (stepped once an epoch, as lit-d2l's fit steps them).
PACKED_SCHEDULES = {
    "torch.optim.lr_scheduler.StepLR": ("step_size", "gamma"),
    "torch.optim.lr_scheduler.CosineAnnealingLR": ("T_max", "eta_min"),
}


def arm_schedule(model: Any) -> tuple[str, dict[str, float]] | None:
    """(class path, settings) of the ``--lr_scheduler`` ``model`` trains with alone, None without one."""
    config = getattr(model, "lr_scheduler_config", None)
    if config is None:
        return None
    schedule = instantiate_class(torch.optim.SGD(_probe(), lr=1.0), config)  # as torch builds it, defaults included
    return config["class_path"], {key: float(getattr(schedule, key)) for key in PACKED_SCHEDULES[config["class_path"]]}


def scheduled_lr(path: str, base_lr: Tensor, settings: dict[str, Tensor], epoch: int) -> Tensor:
    """Each arm's learning rate in ``epoch`` (from 0) under its schedule, in closed form (D2L 12.11):
    StepLR ``lr·γ^⌊epoch/step_size⌋``; CosineAnnealingLR ``η_min + (lr − η_min)(1 + cos(π·epoch/T_max))/2``."""
    if path.endswith("StepLR"):
        return base_lr * settings["gamma"] ** torch.floor(epoch / settings["step_size"])
    eta_min = settings["eta_min"]
    return eta_min + (base_lr - eta_min) * (1 + torch.cos(math.pi * epoch / settings["T_max"])) / 2


def why_schedule_not_packable(scheduler: dict[str, Any] | None) -> str | None:
    """None when a pack can restate the configured ``--lr_scheduler`` (StepLR, CosineAnnealingLR)."""
    if scheduler is None:
        return None
    path = scheduler.get("class_path", "")
    if path not in PACKED_SCHEDULES:
        return f"--lr_scheduler {path.rsplit('.', 1)[-1]} (a pack runs StepLR and CosineAnnealingLR)"
    if (scheduler.get("init_args") or {}).get("last_epoch", -1) != -1:
        return "--lr_scheduler.last_epoch is set (a pack starts every schedule at its beginning)"
    return None
