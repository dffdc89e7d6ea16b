"""One pass over 60,000 Fashion-MNIST-shaped examples: our batch iterator vs. the alternatives.

All three read the same random uint8 images (60,000 x 28 x 28) and labels, batch 256, shuffled,
and produce float images in [0, 1] shaped (B, 1, 28, 28):

- ``tensor_batches``: lit-d2l's TensorBatches with FashionMNIST's per-batch transform;
- ``per_sample``: a per-example Dataset + DataLoader (D2L's ToTensor-per-image way);
- ``raw_slicing``: a bare loop of randperm + index + scale, the floor for this work.

Prints one JSON object as its last line.

    python benchmarks/data_pipeline.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from lit_d2l.data import FashionMNIST, TensorBatches

NUM_EXAMPLES, BATCH_SIZE = 60_000, 256


class PerSampleImages(Dataset):
    """One example at a time, converted to float as torchvision's ToTensor would."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].unsqueeze(0).float().div(255), int(self.labels[index])


def one_pass(batches: Iterable) -> float:
    start = time.perf_counter()
    count = 0
    for _images, labels in batches:
        count += len(labels)
    assert count == NUM_EXAMPLES, count
    return time.perf_counter() - start


def raw_slicing(images: torch.Tensor, labels: torch.Tensor) -> Iterable:
    order = torch.randperm(len(images))
    for start in range(0, len(images), BATCH_SIZE):
        index = order[start : start + BATCH_SIZE]
        yield images.index_select(0, index).unsqueeze(1).float().div_(255), labels.index_select(0, index).long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (NUM_EXAMPLES, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (NUM_EXAMPLES,), dtype=torch.uint8)
    transform = FashionMNIST(data_dir="unused").transform_batch
    ours = TensorBatches((images, labels), BATCH_SIZE, shuffle=True, transform=transform)
    per_sample = DataLoader(PerSampleImages(images, labels), batch_size=BATCH_SIZE, shuffle=True)

    timings: dict[str, list[float]] = {"tensor_batches": [], "per_sample": [], "raw_slicing": []}
    for epoch in range(args.repeats):
        ours.sampler.set_epoch(epoch)
        timings["tensor_batches"].append(one_pass(ours))
        timings["raw_slicing"].append(one_pass(raw_slicing(images, labels)))
        if epoch == 0:  # seconds per pass; once is enough to compare
            timings["per_sample"].append(one_pass(per_sample))
    best = {name: min(values) for name, values in timings.items()}
    print(
        json.dumps(
            {
                "benchmark": "data_pipeline",
                "examples": NUM_EXAMPLES,
                "batch_size": BATCH_SIZE,
                "torch_threads": torch.get_num_threads(),
                "tensor_batches_s": round(best["tensor_batches"], 4),
                "raw_slicing_s": round(best["raw_slicing"], 4),
                "per_sample_s": round(best["per_sample"], 4),
                "vs_raw_slicing": round(best["tensor_batches"] / best["raw_slicing"], 3),
                "speedup_vs_per_sample": round(best["per_sample"] / best["tensor_batches"], 1),
                "targets": {"vs_raw_slicing": 1.2, "speedup_vs_per_sample": 12},
            }
        )
    )


if __name__ == "__main__":
    main()
