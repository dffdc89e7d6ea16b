"""Per-epoch cost of training through lit-d2l's fit vs. a bare PyTorch loop, on the same tensors.

Softmax regression and the 784-256-10 MLP, one epoch over 60,000 random uint8 images of
Fashion-MNIST's shape (batch 256, lr 0.1): every batch gets its own SGD update and its loss
logged in both. The Lightning fit runs ``--epochs`` epochs and a bare epoch (its own model, the same batches)
runs right after each of them, so both are sampled at the same moments. The first epoch of each
is start-up and is reported apart; ``ratio`` compares the best steady epochs and
``median_paired_ratio`` the median over epoch pairs. Prints one JSON object as its last line.

    python benchmarks/loop_overhead.py [--epochs 4] [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed]

On a GPU the images sit on the device for both loops (lit-d2l keeps a split there), and each
epoch's clock stops after a device synchronisation. ``bf16-mixed`` runs the bare loop under
``torch.autocast(dtype=torch.bfloat16)``, as Lightning's precision plugin does.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareLoop:
    """The same model, optimizer, batches and update as a plain PyTorch loop, one epoch per call."""

    def __init__(self, name: str, data: RandomFashion, precision: str) -> None:
        self.device = data._images.device
        self.model = make_model(name).to(self.device)
        self.optimizer = self.model.configure_optimizers()
        self.batches = data.batches("train", shuffle=True)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
        self.losses: list[torch.Tensor] = []
        self.epochs = 0

    def epoch(self) -> float:
        self.batches.sampler.set_epoch(self.epochs)
        self.epochs += 1
        synchronize(self.device)
        start = time.perf_counter()
        for X, y in self.batches:
            with self.autocast:
                loss = nn.functional.cross_entropy(self.model(X), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.losses.append(loss.detach())
        synchronize(self.device)
        return time.perf_counter() - start


class PairedEpochs(L.Callback):
    """Times each Lightning epoch, then runs one bare epoch right after it: both loops sample the
    machine at the same moments, so a noisy spell on a shared machine slows both, not one."""

    def __init__(self, bare: BareLoop) -> None:
        self.bare = bare
        self.ours: list[float] = []
        self.theirs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.ours.append(time.perf_counter() - self._start)
        self.theirs.append(self.bare.epoch())


def make_model(name: str) -> L.LightningModule:
    torch.manual_seed(0)
    if name == "softmax":
        return SoftmaxRegression(num_inputs=784, num_outputs=10, lr=0.1)
    return MLP(hidden_sizes=[256], num_inputs=784, num_outputs=10, lr=0.1)


def paired_fit(
    name: str, data: RandomFashion, epochs: int, uri: str, accelerator: str = "cpu", precision: str = "32-true"
) -> tuple[PairedEpochs, float]:
    """lit-d2l's fit (its Trainer defaults, the MLflow logger, per-step loss), a bare epoch after each of its own."""
    timer = PairedEpochs(BareLoop(name, data, precision))
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=TrackingLogger("loop-overhead", tracking_uri=uri),
        log_every_n_steps=1,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        **fast_trainer_defaults(),
    )
    start = time.perf_counter()
    trainer.fit(make_model(name), data)
    return timer, time.perf_counter() - start - sum(timer.theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    args = parser.parse_args()
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (NUM_EXAMPLES, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (NUM_EXAMPLES,), dtype=torch.uint8)
    data = RandomFashion(images.to(device), labels.to(device))
    result: dict = {
        "benchmark": "loop_overhead",
        "examples": NUM_EXAMPLES,
        "batch_size": 256,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "precision": args.precision,
    }
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        paired_fit("softmax", data, 1, uri, args.accelerator, args.precision)  # warm-up: store, imports, kernels
        for name in ("softmax", "mlp"):
            timer, total = paired_fit(name, data, args.epochs, uri, args.accelerator, args.precision)
            ours, bare = timer.ours[1:], timer.theirs[1:]  # the first epoch of each is start-up
            result[name] = {
                "lit_d2l_epoch_s": round(min(ours), 4),
                "bare_epoch_s": round(min(bare), 4),
                "ratio": round(min(ours) / min(bare), 3),
                "median_paired_ratio": round(statistics.median(o / b for o, b in zip(ours, bare, strict=True)), 3),
                "first_epoch_s": round(timer.ours[0], 4),
                "startup_s": round(total - sum(timer.ours), 4),
            }
    result["targets"] = {"mlp_ratio": 1.15, "softmax_ratio": 1.5}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
