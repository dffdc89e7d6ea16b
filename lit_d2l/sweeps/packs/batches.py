"""Minibatches for a pack: every arm draws its own batch from its own data, in its own order.

A split is held as one tensor per field with the arm axis first (``[K, N, ...]``); when every arm has
the same data (a real dataset, one data seed), it is one copy expanded along the arm axis, not K.
Each step gathers ``[K, B, ...]``: row k holds the batch arm k would see alone, because each arm
keeps its own :class:`~lit_d2l.data.EpochSampler` with its own shuffle seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from lit_d2l.data.batches import Batch, EpochSampler


def stack_arms(per_arm: Sequence[Sequence[Tensor]]) -> tuple[Tensor, ...]:
    """One split of every arm, stacked along a new leading arm axis; shared data is not copied."""
    fields = list(zip(*per_arm, strict=True))
    stacked = []
    for tensors in fields:
        first = tensors[0]
        if all(t is first or (t.shape == first.shape and torch.equal(t, first)) for t in tensors[1:]):
            stacked.append(first.unsqueeze(0).expand(len(tensors), *first.shape))
        else:
            stacked.append(torch.stack(tensors))
    return tuple(stacked)


def _gather(tensor: Tensor, index: Tensor, offsets: Tensor) -> Tensor:
    """Rows ``index[k]`` of arm k's examples, ``[K, B, ...]``, with one ``index_select`` (about 10x faster
    on the CPU than advanced indexing with an arm index)."""
    arms, size = index.shape
    if tensor.stride(0) == 0:  # one copy shared by every arm (expanded)
        rows = tensor[0].index_select(0, index.reshape(-1))
    else:
        rows = tensor.reshape(-1, *tensor.shape[2:]).index_select(0, (index + offsets).reshape(-1))
    return rows.reshape(arms, size, *tensor.shape[2:])


class _ArmSamplers:
    """What Lightning's fit loop looks for on a loader (``sampler.set_epoch``), for every arm at once."""

    def __init__(self, samplers: list[EpochSampler]) -> None:
        self.samplers = samplers

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def orders(self) -> Tensor:
        """This epoch's example order of every arm, ``[K, N]``."""
        return torch.stack([sampler.indices() for sampler in self.samplers])


class PackedBatches:
    """Iterable of ``[K, B, ...]`` minibatches over arm-stacked tensors; ``transform`` runs once per batch."""

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        shuffle_seeds: Sequence[int] | None = None,
        transform: Callable[[Batch], Batch] | None = None,
    ) -> None:
        self.tensors = tuple(tensors)
        self.num_arms, self.num_examples = self.tensors[0].shape[:2]
        self.batch_size = batch_size
        self.transform = transform
        seeds = list(shuffle_seeds) if shuffle_seeds is not None else [0] * self.num_arms
        shuffle = shuffle_seeds is not None
        self.sampler = _ArmSamplers([EpochSampler(self.num_examples, shuffle, seed) for seed in seeds])
        self.batch_sampler = None

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        shuffled = self.sampler.samplers[0].shuffle
        device = self.tensors[0].device
        orders = self.sampler.orders().to(device) if shuffled else None
        offsets = torch.arange(self.num_arms, device=device).unsqueeze(1) * self.num_examples
        for start in range(0, self.num_examples, self.batch_size):
            if orders is None:  # the same rows for every arm: a view
                batch = tuple(t[:, start : start + self.batch_size] for t in self.tensors)
            else:
                index = orders[:, start : start + self.batch_size]
                batch = tuple(_gather(t, index, offsets) for t in self.tensors)
            yield self._transformed(batch) if self.transform else batch

    def _transformed(self, batch: Batch) -> Batch:
        """The DataModule's per-batch transform, applied to the K batches as one batch of K·B examples."""
        assert self.transform is not None
        flat = tuple(t.reshape(-1, *t.shape[2:]) for t in batch)
        return tuple(t.reshape(self.num_arms, -1, *t.shape[1:]) for t in self.transform(flat))
