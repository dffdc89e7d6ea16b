"""Cost of tracking: D2L's linear regression with per-step logging to MLflow vs. no logger.

Both fits run in this one process on a store that already exists, alternating, and the best of
``--repeats`` is kept for each. Also reported: a bare PyTorch loop on the same data, and the fixed
per-run cost (run creation, the config's params, the config artifact, tags, final flush and status),
and, once, the same fit with Lightning's stock ``MLFlowLogger`` for comparison.
Prints one JSON object as its last line.

    python benchmarks/tracking_overhead.py [--epochs 30] [--repeats 3]
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
from lightning.pytorch.loggers import MLFlowLogger

from lit_d2l.data import SyntheticRegressionData
from lit_d2l.models import LinearRegressionScratch
from lit_d2l.runner import fast_trainer_defaults
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import flatten

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "linear_regression.yaml"


def lightning_fit(epochs: int, logger: TrackingLogger | bool) -> float:
    L.seed_everything(0, verbose=False)
    model, data = LinearRegressionScratch(lr=0.03), SyntheticRegressionData()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **fast_trainer_defaults(),
    )
    start = time.perf_counter()
    trainer.fit(model, data)
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
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        lightning_fit(1, TrackingLogger("warm-up", tracking_uri=uri))  # creates the store; warms up imports
        lightning_fit(1, False)
        no_logger, tracked, bare = [], [], []
        for _ in range(args.repeats):
            no_logger.append(lightning_fit(args.epochs, False))
            tracked.append(lightning_fit(args.epochs, TrackingLogger("bench", tracking_uri=uri)))
            bare.append(bare_fit(args.epochs))
        fixed = min(fixed_run_cost(uri) for _ in range(args.repeats))
        stock = lightning_fit(args.epochs, MLFlowLogger(experiment_name="stock", tracking_uri=uri))
    result = {
        "benchmark": "tracking_overhead",
        "epochs": args.epochs,
        "steps": args.epochs * 32,
        "no_logger_s": round(min(no_logger), 4),
        "tracked_s": round(min(tracked), 4),
        "ratio": round(min(tracked) / min(no_logger), 4),
        "bare_torch_s": round(min(bare), 4),
        "tracked_vs_bare": round(min(tracked) / min(bare), 3),
        "fixed_per_run_ms": round(fixed * 1000, 1),
        "stock_mlflow_logger_s": round(stock, 4),
        "stock_ratio": round(stock / min(no_logger), 3),
        "targets": {"ratio": 1.10, "fixed_per_run_ms": 150},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
