"""What training keeps in memory that inference does not: the tensors autograd saves for backward (D2L 5.3.3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def saved_for_backward(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` and count the bytes autograd saves for backward meanwhile, each distinct storage once.

    Views of one tensor (and a tensor saved by two operators) share a storage and count once;
    under ``torch.no_grad()`` nothing is saved and the count is 0.
    """
    storages: dict[tuple[str, int], int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[str(tensor.device), storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(storages.values())
