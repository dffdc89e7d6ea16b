"""Per-layer diagnostics at bounded cost: gradient and weight norms, activation statistics, symmetry (D2L 5.4).

Measured at step 0 and every ``every_n_steps`` steps: the gradient and weight norm of every weight (a parameter of
two or more dimensions, e.g. ``net.1.weight`` or ``W1``), the activation mean and std of the output of every
``nn.Linear`` (e.g. ``net.1``). Per-layer values do not become MLflow metrics (a deep MLP would bury the losses
under hundreds of them): they go to one table per run, ``diagnostics/layers.csv`` (with a figure,
``diagnostics/layers.png``, where asked), written at the end of the fit; the metrics are a few summaries over layers
(``grad_norm/min``, ``grad_norm/max``, ``act_std/min``, ``act_std/max``). Activation hooks are attached only for the
forward pass of a measuring step, so other steps pay nothing. At the end of each fit, ``distinct_units/min`` is the
fewest distinct hidden units of any hidden layer (D2L 5.4.3), each layer's count in
``diagnostics/distinct_units.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

TABLE = "diagnostics/layers.csv"
FIGURE = "diagnostics/layers.png"
UNITS = "diagnostics/distinct_units.json"
COLUMNS = ("step", "layer", "grad_norm", "weight_norm", "act_mean", "act_std")


def layer_name(weight: str) -> str:
    """The table's name for a weight: its module's (``net.1`` for ``net.1.weight``), else its own (``W1``)."""
    return weight.removesuffix(".weight")


def summarize(
    step: int,
    grad_norms: Mapping[str, float],
    weight_norms: Mapping[str, float],
    activations: Mapping[str, tuple[float, float]],
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One measuring step's per-layer values (by weight name; activations by layer) as the run records them:
    the summary metrics over layers (min and max of each, a NaN anywhere shows) and the table's rows."""
    metrics: dict[str, float] = {}
    for key, values in (("grad_norm", list(grad_norms.values())), ("act_std", [s for _, s in activations.values()])):
        if values:
            column = torch.tensor(values, dtype=torch.float64)
            metrics[f"{key}/min"], metrics[f"{key}/max"] = column.min().item(), column.max().item()
    rows: dict[str, dict[str, Any]] = {}
    for weight, norm in weight_norms.items():
        rows[layer_name(weight)] = {"step": step, "layer": layer_name(weight), "weight_norm": norm}
        if weight in grad_norms:
            rows[layer_name(weight)]["grad_norm"] = grad_norms[weight]
    for layer, (mean, std) in activations.items():
        rows.setdefault(layer, {"step": step, "layer": layer}).update(act_mean=mean, act_std=std)
    return metrics, list(rows.values())


def table_text(rows: list[dict[str, Any]]) -> str:
    """The rows as ``diagnostics/layers.csv`` (blank where a value was not measured)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def read_table(text: str) -> list[dict[str, Any]]:
    """``diagnostics/layers.csv`` back as rows: ``step`` an int, measured values floats, blanks None."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        values = {k: (float(v) if v else None) for k, v in row.items() if k not in ("step", "layer")}
        rows.append({"step": int(row["step"]), "layer": row["layer"], **values})
    return rows


def table_figure(rows: list[dict[str, Any]]) -> Any:
    """Gradient norm and activation std per layer (input → output), one line per measured step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    layers = list(dict.fromkeys(row["layer"] for row in rows))
    steps = sorted({row["step"] for row in rows})
    fig = Figure(figsize=(14, 5), dpi=100, layout="constrained")
    panels = fig.subplots(1, 2)
    colours = matplotlib.colormaps["viridis"]
    columns = (("grad_norm", "‖∂L/∂W‖", "Gradient norm of each weight"), ("act_std", "std", "Std of each output"))
    for ax, (column, label, title) in zip(panels, columns, strict=True):
        ax.set_title(title, fontsize=10, loc="left")
        for i, step in enumerate(steps):
            values = {r["layer"]: r.get(column) for r in rows if r["step"] == step}
            xs = [n for n, layer in enumerate(layers, 1) if _positive(values.get(layer))]
            ys = [values[layers[n - 1]] for n in xs]
            ax.plot(xs, ys, marker=".", color=colours(i / max(1, len(steps) - 1)), label=f"step {step}")
        ax.set_yscale("log")
        ax.set_xlabel("layer (input → output)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if len(steps) <= 12:
        panels[1].legend(fontsize=8)
    else:
        panels[1].set_title(f"{len(steps)} steps: {steps[0]} (dark) → {steps[-1]} (light)", fontsize=9, loc="right")
    fig.suptitle("Per-layer diagnostics (every value in diagnostics/layers.csv)")
    return fig


def _positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def write_artifacts(
    logger: Any, rows: list[dict[str, Any]], units: Mapping[str, int] | None, figure: bool = True
) -> None:
    """The table, its figure (if ``figure``) and the distinct-unit counts as artifacts of the logger's run."""
    if logger is None or not hasattr(logger, "log_text"):
        return
    if rows:
        logger.log_text(table_text(rows), TABLE)
        if figure:
            logger.log_figure(table_figure(rows), FIGURE)
    if units:
        logger.log_text(json.dumps(dict(units), indent=1), UNITS)


def units_metrics(units: Mapping[str, int]) -> dict[str, float]:
    """``distinct_units/min`` over the hidden layers (nothing for a model without any)."""
    return {"distinct_units/min": float(min(units.values()))} if units else {}


class LayerDiagnostics(L.Callback):
    """Gradient and weight norm of every weight, activation mean/std of every ``nn.Linear``.

    ``figure=False`` stores the table without its figure: drawing it costs about 0.4 s, more than a packed
    sweep arm's whole training; a sweep's report draws every arm's step-0 norms in one figure instead.
    """

    def __init__(self, every_n_steps: int = 50, figure: bool = True) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self.figure = figure
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._activations: dict[str, tuple[float, float]] = {}
        self.rows: list[dict[str, Any]] = []  # checkpointed: a resumed fit's table keeps the rows before it

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if not self._due(trainer):
            return
        for name, layer in linear_layers(pl_module):
            self._handles.append(layer.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):
        def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
            output = output.detach().float()
            std = output.std().item() if output.numel() > 1 else 0.0
            self._activations[name] = (output.mean().item(), std)

        return record

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._remove_hooks()
        if not self._due(trainer):
            return
        grads, norms = {}, {}
        for name, weight in pl_module.named_parameters():
            if weight.ndim < 2:
                continue
            if weight.grad is not None:
                grads[name] = weight.grad.detach().norm().item()
            norms[name] = weight.detach().norm().item()
        step = trainer.global_step
        self.rows = [row for row in self.rows if row["step"] != step]  # a step measured again replaces its rows
        metrics, rows = summarize(step, grads, norms, self._activations)
        self.rows += rows
        self._activations = {}
        if trainer.logger is not None and metrics:
            trainer.logger.log_metrics(metrics, step=step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Also when a fit stops early (a divergence): the table has every step measured until then."""
        self._remove_hooks()
        units = distinct_units(pl_module)
        if trainer.logger is not None and units:
            trainer.logger.log_metrics(units_metrics(units), step=trainer.global_step)
        write_artifacts(trainer.logger, self.rows, units, self.figure)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A fit stopped by an error (a divergence raises one) still leaves the table of what it measured."""
        self._remove_hooks()
        with contextlib.suppress(Exception):  # the fit's own error is the one to report
            write_artifacts(trainer.logger, self.rows, None, self.figure)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers of ``module`` with their PyTorch names, input layer first."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]


def distinct_units(module: nn.Module, rtol: float = 1e-5) -> dict[str, int]:
    """For every hidden layer, how many of its units differ: rows of the weight matrix (with the unit's bias)
    that are not equal to an earlier row within ``rtol`` of the layer's largest weight.

    Equal initial weights stay equal under training, so a constant initialisation leaves 1 distinct unit
    per layer, however wide (D2L 5.4.3); a random one, all of them. Hidden layers are every ``nn.Linear``
    but the last (the output), or, for a model without any (``MLPScratch``), every 2-D weight but the last.
    """
    layers = linear_layers(module)
    if layers:
        hidden = [(name, layer.weight, layer.bias) for name, layer in layers[:-1]]
    else:
        weights = [(name, p) for name, p in module.named_parameters() if p.ndim == 2]
        hidden = [(name, weight, None) for name, weight in weights[:-1]]
    counts = {}
    for name, weight, bias in hidden:
        rows = weight.detach().float()
        if bias is not None:
            rows = torch.cat([rows, bias.detach().float().reshape(-1, 1)], dim=1)
        counts[name] = _distinct_rows(rows, rtol * max(1.0, rows.abs().max().item()))
    return counts


def _distinct_rows(rows: torch.Tensor, tolerance: float) -> int:
    """Rows left after merging each into the first earlier row within ``tolerance`` (max-abs difference)."""
    close = torch.cdist(rows, rows, p=float("inf")) <= tolerance
    merged = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
    count = 0
    for i in range(len(rows)):
        if not merged[i]:
            count += 1
            merged |= close[i]
    return count
