"""Small, valid IDX files (the format of Fashion-MNIST's files), written by the tests that read them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

UNSIGNED_BYTE = 0x08


def write_idx(path: str | Path, array: np.ndarray | torch.Tensor, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed by default): magic, one big-endian int32 per
    dimension, then the bytes."""
    data = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, UNSIGNED_BYTE, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()
    Path(path).write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
