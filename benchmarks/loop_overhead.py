"""Per-epoch cost of training through lit-d2l vs. a stock LightningModule vs. a bare PyTorch loop.

Softmax regression and the 784-256-10 MLP, one epoch over 60,000 random uint8 images of
Fashion-MNIST's shape (batch 256, lr 0.1), on the same batches (lit-d2l's in-memory iterator):

- ``lit_d2l``: lit-d2l's model through a Trainer with lit-d2l's MLflow logger, ``train/loss``
  logged every ``--log-every`` steps (the Fashion-MNIST configs' value);
- ``stock``: the same network as a LightningModule written as the Lightning docs write one
  (``training_step`` computes the loss, ``self.log``s it and returns it; SGD in
  ``configure_optimizers``), same Trainer and logger;
- ``stock_unlogged``: the stock module without its ``self.log`` call: what Lightning's loop costs
  by itself, so the gap to ``stock`` is the price of one ``self.log`` a step;
- ``bare``: the same network and update in a plain PyTorch loop (no logging).

Each Lightning epoch is followed by a bare epoch (its own model, the same batches), so both are
sampled at the same moments on a noisy machine. The first epoch of each fit is start-up and is
reported apart; ``ratio`` compares the best steady epochs, ``median_paired_ratio`` the median over
epoch pairs. Prints one JSON object as its last line.

    python benchmarks/loop_overhead.py [--epochs 4] [--log-every 10]
        [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed]

On a GPU the images sit on the device for every loop, and each epoch's clock stops after a
device synchronisation. ``bf16-mixed`` runs the bare loop under
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
from lit_d2l.models import MLP, SoftmaxRegression, built
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
        return built(SoftmaxRegression(num_inputs=784, num_outputs=10, lr=0.1))
    return built(MLP(hidden_sizes=[256], num_inputs=784, num_outputs=10, lr=0.1))


class StockModule(L.LightningModule):
    """A LightningModule as the Lightning docs write one, around the same network."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)

    def training_step(self, batch, batch_idx):
        X, y = batch
        loss = nn.functional.cross_entropy(self(X), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class UnloggedStockModule(StockModule):
    """The stock module without ``self.log``: Lightning's loop alone."""

    def training_step(self, batch, batch_idx):
        X, y = batch
        return nn.functional.cross_entropy(self(X), y)


def paired_fit(
    module: L.LightningModule,
    name: str,
    data: RandomFashion,
    epochs: int,
    uri: str,
    log_every: int,
    accelerator: str = "cpu",
    precision: str = "32-true",
) -> tuple[PairedEpochs, float]:
    """One fit of ``module`` (the MLflow logger, per-step loss), a bare epoch after each of its own."""
    timer = PairedEpochs(BareLoop(name, data, precision))
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=TrackingLogger("loop-overhead", tracking_uri=uri),
        log_every_n_steps=log_every,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(module, data)
    return timer, time.perf_counter() - start - sum(timer.theirs)


def summary(timer: PairedEpochs, total: float) -> dict[str, float]:
    ours, bare = timer.ours[1:], timer.theirs[1:]  # the first epoch of each is start-up
    return {
        "epoch_s": round(min(ours), 4),
        "bare_epoch_s": round(min(bare), 4),
        "ratio": round(min(ours) / min(bare), 3),
        "median_paired_ratio": round(statistics.median(o / b for o, b in zip(ours, bare, strict=True)), 3),
        "first_epoch_s": round(timer.ours[0], 4),
        "startup_s": round(total - sum(timer.ours), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=10, help="trainer.log_every_n_steps (the configs' value)")
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
        "log_every_n_steps": args.log_every,
    }
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        fit = {"uri": uri, "log_every": args.log_every, "accelerator": args.accelerator, "precision": args.precision}
        paired_fit(make_model("softmax"), "softmax", data, 1, **fit)  # warm-up: store, imports, kernels
        for name in ("softmax", "mlp"):
            ours = summary(*paired_fit(make_model(name), name, data, args.epochs, **fit))
            stock = summary(*paired_fit(StockModule(make_model(name).net, 0.1), name, data, args.epochs, **fit))
            unlogged_module = UnloggedStockModule(make_model(name).net, 0.1)
            unlogged = summary(*paired_fit(unlogged_module, name, data, args.epochs, **fit))
            steps = -(-NUM_EXAMPLES // 256)
            result[name] = {
                "lit_d2l": ours,
                "stock": stock,
                "stock_unlogged": unlogged,
                "ratio": ours["ratio"],
                "stock_ratio": stock["ratio"],
                "stock_unlogged_ratio": unlogged["ratio"],
                "ms_per_step": {
                    "bare": round(1000 * min(ours["bare_epoch_s"], stock["bare_epoch_s"]) / steps, 3),
                    "lightning_loop": round(1000 * (unlogged["epoch_s"] - unlogged["bare_epoch_s"]) / steps, 3),
                    "self_log": round(1000 * (stock["epoch_s"] - unlogged["epoch_s"]) / steps, 3),
                    "lit_d2l_over_stock": round(1000 * (ours["epoch_s"] - stock["epoch_s"]) / steps, 3),
                },
                "lit_d2l_vs_stock": round(ours["epoch_s"] / stock["epoch_s"], 3),
            }
    result["targets"] = {"mlp_ratio": 1.25, "softmax_ratio": 1.8}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
