"""Arms per minute of the overfitting suite: lit-d2l's sweep runner vs. the same arms as bare PyTorch loops.

Both run the same arms (polynomial degree x training-set size, D2L 2nd ed. §4.4 settings: lr 0.01,
batch min(10, n), validation every 20 epochs) on the same data and batches, one after another
in this process; the runner also records every arm in MLflow (a fresh SQLite store). By default a
reduced grid (n up to 100, one seed) keeps the run to a few minutes. Prints one JSON object last.

    python benchmarks/ablation_throughput.py [--epochs 400] [--num-train 2 10 100] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from lit_d2l.ablation.runner import run_sweep
from lit_d2l.ablation.spec import load_spec
from lit_d2l.data import PolynomialData

REPO = Path(__file__).resolve().parents[1]
DEGREES = (2, 4, 20)


def bare_arm(degree: int, num_train: int, epochs: int, seed: int = 0) -> float:
    """One arm as a plain PyTorch loop; returns its final validation loss."""
    torch.manual_seed(seed)
    data = PolynomialData(degree=degree, num_train=num_train, seed=seed)
    train, val = data.batches("train", shuffle=True), data.batches("val")
    model = nn.Linear(degree, 1, bias=False)
    nn.init.normal_(model.weight, 0.0, 0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses, val_loss = [], float("nan")
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        for X, y in train:
            loss = nn.functional.mse_loss(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        if (epoch + 1) % 20 == 0:
            with torch.no_grad():
                val_loss = torch.stack([nn.functional.mse_loss(model(X), y) for X, y in val]).mean().item()
    return val_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--num-train", type=int, nargs="+", default=[2, 10, 100])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    arms = [(d, n) for d in DEGREES for n in args.num_train]

    start = time.perf_counter()
    bare_val = {f"data.degree={d};data.num_train={n}": bare_arm(d, n, args.epochs) for d, n in arms}
    bare_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "throughput.yaml"
        spec_path.write_text(
            f"name: throughput\nbase: {REPO / 'experiments' / 'polynomial.yaml'}\n"
            f"grid: {{data.degree: {list(DEGREES)}, data.num_train: {args.num_train}}}\n"
            f"overrides: {{trainer.max_epochs: {args.epochs}}}\nseeds: [0]\n"
        )
        uri = f"sqlite:///{tmp}/mlflow.db"
        from lit_d2l.tracking.sweeps import SweepStore

        SweepStore(uri).client.search_experiments()  # create the store outside the timing
        start = time.perf_counter()
        result = run_sweep(load_spec(spec_path), workers=args.workers, tracking_uri=uri, echo=lambda _: None)
        runner_s = time.perf_counter() - start
    runner_val = {o.arm: o.metrics.get("val/loss") for o in result.outcomes}
    print(
        json.dumps(
            {
                "benchmark": "ablation_throughput",
                "arms": len(arms),
                "epochs": args.epochs,
                "num_train": args.num_train,
                "workers": args.workers,
                "runner_s": round(runner_s, 2),
                "bare_s": round(bare_s, 2),
                "runner_arms_per_min": round(len(arms) / runner_s * 60, 2),
                "bare_arms_per_min": round(len(arms) / bare_s * 60, 2),
                "runner_vs_bare_time": round(runner_s / bare_s, 3),
                "val_loss_runner": {k: round(v, 4) for k, v in runner_val.items() if v is not None},
                "val_loss_bare": {k: round(v, 4) for k, v in bare_val.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
