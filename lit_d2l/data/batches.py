"""Minibatches sliced from tensors held in memory, sharded across DDP ranks (D2L 3.2.3, done fast).

A per-sample ``Dataset`` + ``DataLoader`` calls Python once per example and collates; here one
index tensor per batch selects rows of the whole split at once.

Sharding rule: every epoch draws one permutation, the same on every rank (seeded by seed and
epoch), and rank r takes positions r, r + W, r + 2W, ... With a per-rank batch of B = G / W (G the
global batch), step k of rank r then reads positions kG + r, kG + r + W, ... < (k + 1)G, so the W
ranks' batches of step k together are exactly one process's batch k of size G: DDP's averaged
gradient is that batch's mean gradient whenever the ranks' batches are equally large.

Training shards (``pad=True``) are padded by wrapping around to a multiple of W, so every rank
takes the same number of steps (DDP needs that); when W does not divide the split, the last step
repeats at most W - 1 examples. Evaluation shards (``pad=False``) are not padded: each example is
counted exactly once, and ranks may differ by one example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

Batch = tuple[Tensor, ...]


class EpochSampler:
    """One rank's indices for the current epoch; Lightning calls ``set_epoch`` before each epoch."""

    def __init__(
        self,
        num_examples: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.num_examples = num_examples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.num_examples / self.world_size)
        return len(range(self.rank, self.num_examples, self.world_size))

    def indices(self) -> Tensor:
        """This rank's shard of this epoch's (shuffled) order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch)))
            order = torch.randperm(self.num_examples, generator=generator)
        else:
            order = torch.arange(self.num_examples)
        total = math.ceil(self.num_examples / self.world_size) * self.world_size
        if self.pad and total > self.num_examples:  # wrap around, repeating the first examples of this order
            order = order.repeat(math.ceil(total / self.num_examples))[:total]
        return order[self.rank :: self.world_size]


class TensorBatches:
    """Iterable of minibatches over equally long tensors; ``transform`` runs once per batch.

    ``batch_size`` is this rank's batch; ``pad`` as in :class:`EpochSampler` (False for evaluation).
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[Batch], Batch] | None = None,
        pad: bool = True,
    ) -> None:
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"tensors must have the same first dimension, got lengths {sorted(lengths)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.transform = transform
        # Named like DataLoader's attributes: Lightning's fit loop finds `sampler` and calls set_epoch.
        self.sampler = EpochSampler(lengths.pop(), shuffle, seed, rank, world_size, pad)
        self.batch_sampler = None
        self._served = 0  # batches handed out in the current epoch
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches) to skip once, after a restore

    def state_dict(self) -> dict[str, int]:
        """Where this epoch stands; Lightning stores it in checkpoints, so a resumed fit continues mid-epoch."""
        return {"epoch": self.sampler.epoch, "batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches_served"]))

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        sampler = self.sampler
        sequential = not sampler.shuffle and sampler.world_size == 1
        # The epoch's order goes to the tensors' device once (index_select wants both on one device).
        order = None if sequential else sampler.indices().to(self.tensors[0].device)
        first = 0
        if self._resume_at is not None and self._resume_at[0] == sampler.epoch:
            first = self._resume_at[1]
        self._resume_at, self._served = None, first
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            self._served += 1
            if order is None:  # a view, no copy
                batch = tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                index = order[start : start + self.batch_size]
                batch = tuple(t.index_select(0, index) for t in self.tensors)
            yield self.transform(batch) if self.transform else batch
