"""Epoch time per arm of a pack of models against one model alone, on Fashion-MNIST-shaped data.

K arms of one model differ in their initialisation seed and share one copy of the data (60,000
examples of 784 features, 10 classes: GaussianClusters in Fashion-MNIST's shape, so it runs offline),
batch 256:

- ``--model mlp`` (the default): D2L's MLP 784-256-10, lr 0.1 (D2L 5.2);
- ``--model lenet``: the sigmoid LeNet-5 on the examples as 1x28x28 images, lr 0.9 (D2L 7.6): a pack of
  convolutions, which ``vmap`` runs as grouped convolutions.

One epoch of the pack is timed against one epoch of a single arm through ``lit-d2l fit``'s own path,
both after a warm-up epoch, on the same device. Prints one JSON object last. Target on a GPU (MLP): a
pack of >= 256 arms at <= 1/50 of a solo arm's epoch time per arm; LeNet has no target yet.

    python benchmarks/packed_epoch.py [--model mlp|lenet] [--arms 256] [--accelerator gpu] [--examples 60000]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from lit_d2l.fit.run import build
from lit_d2l.sweeps.packs.fit import build_arm, fit_pack

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "init_classification.yaml"


class EpochTimer(L.Callback):
    """Wall time of every training epoch (synchronised with the device)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


#: model -> (its fit arguments over the MLP config, the per-arm target against a solo epoch)
MODELS: dict[str, tuple[list[str], float | None]] = {
    "mlp": (["--model.hidden_sizes", "[256]", "--model.lr", "0.1"], 0.02),
    "lenet": (["--model.class_path", "lit_d2l.models.LeNet", "--model.lr", "0.9"], None),
}


def arm_args(accelerator: str, init_seed: int, examples: int, model: str = "mlp") -> list[str]:
    return [
        *("--config", str(CONFIG), "--trainer.logger", "false", "--trainer.max_epochs", "2"),
        *("--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"),
        *("--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0"),
        *("--trainer.limit_val_batches", "0", "--trainer.accelerator", accelerator),
        *MODELS[model][0],
        *("--model.init_seed", str(init_seed)),
        *("--data.num_inputs", "784", "--data.num_classes", "10", "--data.num_train", str(examples)),
        *("--data.num_val", "1000", "--data.batch_size", "256", "--seed_everything", "0", "--data.seed", "0"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="mlp")
    parser.add_argument("--arms", type=int, default=256)
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--examples", type=int, default=60_000)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    solo_timer = EpochTimer()
    cli = build("fit", arm_args(args.accelerator, 0, args.examples, args.model), callbacks=[solo_timer])
    assert cli is not None
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    solo = min(solo_timer.seconds[1:] or solo_timer.seconds)

    arms = [build_arm(arm_args(args.accelerator, seed, args.examples, args.model)) for seed in range(args.arms)]
    pack_timer = EpochTimer()
    fit_pack(arms, callbacks=[pack_timer])
    packed = min(pack_timer.seconds[1:] or pack_timer.seconds)
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu"
    print(
        json.dumps(
            {
                "benchmark": "packed_epoch",
                "model": args.model,
                "device": device,
                "arms": args.arms,
                "examples": args.examples,
                "solo_epoch_s": round(solo, 4),
                "pack_epoch_s": round(packed, 4),
                "pack_epoch_per_arm_s": round(packed / args.arms, 5),
                "per_arm_vs_solo": round(packed / args.arms / solo, 4),
                "target_per_arm_vs_solo": MODELS[args.model][1],
            }
        )
    )


if __name__ == "__main__":
    main()
