"""Index splits: a seeded, stratified hold-out set and K-fold cross-validation (D2L 5.7)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_d2l.errors import require


def holdout_indices(labels: Tensor, val_size: int | float, seed: int) -> tuple[Tensor, Tensor]:
    """Train and validation indices; each class gets its share of the validation set.

    ``val_size`` is a count (int) or a fraction in (0, 1).
    """
    n = len(labels)
    count = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    require(0 < count < n, f"data.val_size must leave both splits non-empty: got {val_size} of {n} examples")
    generator = torch.Generator().manual_seed(seed)
    classes, class_counts = torch.unique(labels, return_counts=True)
    # Largest-remainder apportionment: per-class quotas that add up to exactly `count`.
    quotas = class_counts.double() * count / n
    taken = quotas.floor().long()
    remainder = count - int(taken.sum())
    taken[torch.argsort(quotas - taken, descending=True)[:remainder]] += 1
    val_parts = []
    for cls, k in zip(classes.tolist(), taken.tolist(), strict=True):
        members = torch.nonzero(labels == cls).reshape(-1)
        val_parts.append(members[torch.randperm(len(members), generator=generator)[:k]])
    val = torch.cat(val_parts).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).reshape(-1), val


def kfold_indices(n: int, num_folds: int, fold: int, seed: int) -> tuple[Tensor, Tensor]:
    """Fold ``fold`` of ``num_folds``: it validates, the other K-1 folds train.

    One seeded permutation is cut into K near-equal folds, so over f = 0..K-1 the validation
    folds are disjoint and cover all n examples exactly once.
    """
    require(num_folds >= 2, f"data.num_folds must be >= 2 for cross-validation, got {num_folds}")
    require(0 <= fold < num_folds, f"data.fold must be in [0, {num_folds}), got {fold}")
    require(num_folds <= n, f"data.num_folds ({num_folds}) cannot exceed the {n} examples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = torch.tensor_split(order, num_folds)
    train = torch.cat([f for i, f in enumerate(folds) if i != fold]).sort().values
    return train, folds[fold].sort().values
