"""Cost of tracking: D2L's linear regression with per-step logging to MLflow vs. no logger.

Three ways to train the same model on the same batches, in this one process: lit-d2l's
``LinearRegressionScratch``, a stock LightningModule written as the Lightning docs write one
(``self.log`` the loss, return it; SGD in ``configure_optimizers``), and a bare PyTorch loop.
Each Lightning fit runs without a logger and with lit-d2l's ``TrackingLogger`` on a store that
already exists (``train/loss`` every ``--log-every`` steps; 1 = every step, the worst case),
alternating, and the best of ``--repeats`` is kept for each. Also reported: the fixed per-run cost
(run creation, the config's params, the config artifact, tags, final flush and status), and,
once, lit-d2l's model with Lightning's stock ``MLFlowLogger`` for comparison.
Prints one JSON object as its last line.

    python benchmarks/tracking_overhead.py [--epochs 30] [--repeats 3] [--log-every 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.loggers import Logger, MLFlowLogger
from torch import nn

from lit_d2l.data import SyntheticRegressionData
from lit_d2l.models import LinearRegressionScratch
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import flatten

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "linear_regression.yaml"


class StockLinearRegression(L.LightningModule):
    """D2L 3.4's model as a LightningModule written the way the Lightning docs write one."""

    def __init__(self, lr: float = 0.03) -> None:
        super().__init__()
        self.lr = lr
        self.w = nn.Parameter(torch.normal(0, 0.01, (2, 1)))
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.w + self.b

    def training_step(self, batch, batch_idx):
        X, y = batch
        loss = ((self(X) - y) ** 2 / 2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        X, y = batch
        self.log("val/loss", ((self(X) - y) ** 2 / 2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


MODELS = {"lit_d2l": lambda: LinearRegressionScratch(lr=0.03), "stock": StockLinearRegression}


def lightning_fit(model: str, epochs: int, logger: Logger | bool, log_every: int = 1) -> float:
    L.seed_everything(0, verbose=False)
    module, data = MODELS[model](), SyntheticRegressionData()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=log_every,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, data)
    return time.perf_counter() - start


def bare_fit(epochs: int) -> float:
    """The same model, data, batches and update as a plain PyTorch loop (with a validation pass)."""
    torch.manual_seed(0)
    data = SyntheticRegressionData()
    train, val = data.batches("train", shuffle=True), data.batches("val")
    w = torch.normal(0, 0.01, (2, 1), requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    start = time.perf_counter()
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        for X, y in train:
            loss = ((X @ w + b - y) ** 2 / 2).mean()
            loss.backward()
            with torch.no_grad():
                for p in (w, b):
                    p -= 0.03 * p.grad
                    p.grad.zero_()
            loss.item()
        with torch.no_grad():
            for X, y in val:
                ((X @ w + b - y) ** 2 / 2).mean().item()
    return time.perf_counter() - start


def fixed_run_cost(uri: str) -> float:
    """Seconds for everything a run costs besides its metrics."""
    config_text = CONFIG.read_text()
    params = flatten(yaml.safe_load(config_text))
    start = time.perf_counter()
    logger = TrackingLogger(experiment_name="fixed-cost", tracking_uri=uri)
    logger.log_text(config_text, "config.yaml")
    logger.log_hyperparams(params)
    logger.set_tags({"model": "LinearRegressionScratch", "dataset": "SyntheticRegressionData"})
    logger.log_metrics({"val/loss": 0.1}, step=0)
    logger.finalize("success")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=1, help="trainer.log_every_n_steps (1: every step)")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        lightning_fit("lit_d2l", 1, TrackingLogger("warm-up", tracking_uri=uri))  # creates the store; imports
        lightning_fit("stock", 1, False)
        for _ in range(args.repeats):
            for model in MODELS:
                times.setdefault(f"{model}_no_logger", []).append(lightning_fit(model, args.epochs, False))
                logger = TrackingLogger("bench", tracking_uri=uri)
                times.setdefault(f"{model}_tracked", []).append(
                    lightning_fit(model, args.epochs, logger, args.log_every)
                )
            times.setdefault("bare", []).append(bare_fit(args.epochs))
        fixed = min(fixed_run_cost(uri) for _ in range(args.repeats))
        stock_logger = MLFlowLogger(experiment_name="stock", tracking_uri=uri)
        stock = lightning_fit("lit_d2l", args.epochs, stock_logger, args.log_every)
    best = {key: min(values) for key, values in times.items()}
    result = {
        "benchmark": "tracking_overhead",
        "epochs": args.epochs,
        "steps": args.epochs * 32,
        "log_every_n_steps": args.log_every,
        **{f"{key}_s": round(value, 4) for key, value in best.items()},
        "ratio": round(best["lit_d2l_tracked"] / best["lit_d2l_no_logger"], 4),
        "stock_module_ratio": round(best["stock_tracked"] / best["stock_no_logger"], 4),
        "lit_d2l_tracked_vs_bare": round(best["lit_d2l_tracked"] / best["bare"], 3),
        "stock_tracked_vs_bare": round(best["stock_tracked"] / best["bare"], 3),
        "fixed_per_run_ms": round(fixed * 1000, 1),
        "stock_mlflow_logger_s": round(stock, 4),
        "stock_mlflow_logger_ratio": round(stock / best["lit_d2l_no_logger"], 3),
        "targets": {"ratio": 1.15, "fixed_per_run_ms": 150},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
