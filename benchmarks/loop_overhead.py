"""Per-epoch cost of training through lit-d2l's fit vs. a bare PyTorch loop, on the same tensors.

Softmax regression and the 784-256-10 MLP, one epoch over 60,000 random uint8 images of
Fashion-MNIST's shape (batch 256, lr 0.1): every batch gets its own SGD update and its loss
logged in both. The Lightning fit runs ``--epochs`` epochs; the first is start-up and is reported
apart, the rest are steady state (best epoch). The bare loop runs the same epochs on the same
batches before and after it. Prints one JSON object as its last line.

    python benchmarks/loop_overhead.py [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings

import lightning as L
import torch
from torch import nn

from lit_d2l.data import FashionMNIST
from lit_d2l.models import MLP, SoftmaxRegression
from lit_d2l.runner import fast_trainer_defaults
from lit_d2l.tracking import TrackingLogger

NUM_EXAMPLES = 60_000


class RandomFashion(FashionMNIST):
    """FashionMNIST's batches and transform over random images: no files needed."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(data_dir="unused", batch_size=256)
        self._images, self._labels = images, labels

    def prepare_data(self) -> None:
        pass

    def build_splits(self):
        empty = (self._images[:0], self._labels[:0])
        return {"train": (self._images, self._labels), "val": empty, "test": empty}


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def make_model(name: str) -> L.LightningModule:
    torch.manual_seed(0)
    if name == "softmax":
        return SoftmaxRegression(num_inputs=784, num_outputs=10, lr=0.1)
    return MLP(hidden_sizes=[256], num_inputs=784, num_outputs=10, lr=0.1)


def lightning_epochs(name: str, data: RandomFashion, epochs: int, uri: str) -> tuple[list[float], float]:
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=TrackingLogger("loop-overhead", tracking_uri=uri),
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        **fast_trainer_defaults(),
    )
    start = time.perf_counter()
    trainer.fit(make_model(name), data)
    return timer.seconds, time.perf_counter() - start


def bare_epochs(name: str, data: RandomFashion, epochs: int) -> list[float]:
    model = make_model(name)
    optimizer = model.configure_optimizers()
    batches = data.batches("train", shuffle=True)
    seconds, losses = [], []
    for epoch in range(epochs):
        batches.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for X, y in batches:
            loss = nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (NUM_EXAMPLES, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (NUM_EXAMPLES,), dtype=torch.uint8)
    data = RandomFashion(images, labels)
    result: dict = {"benchmark": "loop_overhead", "examples": NUM_EXAMPLES, "batch_size": 256}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        lightning_epochs("softmax", data, 1, uri)  # warm-up: store, imports, kernels
        for name in ("softmax", "mlp"):
            # Bare epochs before and after the Lightning fit, and the best steady epoch of each:
            # on a shared 2-core machine, the minimum is the figure least moved by other load.
            bare = bare_epochs(name, data, args.epochs)
            ours, total = lightning_epochs(name, data, args.epochs, uri)
            bare += bare_epochs(name, data, args.epochs)
            steady_ours, steady_bare = min(ours[1:]), min(bare[1:])
            result[name] = {
                "lit_d2l_epoch_s": round(steady_ours, 4),
                "bare_epoch_s": round(steady_bare, 4),
                "ratio": round(steady_ours / steady_bare, 3),
                "first_epoch_s": round(ours[0], 4),
                "startup_s": round(total - sum(ours), 4),
            }
    result["targets"] = {"mlp_ratio": 1.15, "softmax_ratio": 1.5}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
