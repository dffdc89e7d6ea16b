"""Reader for the IDX format of MNIST and Fashion-MNIST, validating everything it reads.

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each
dimension as a big-endian int32, then the data. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from lit_d2l.errors import UserError

_UNSIGNED_BYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(UserError):
    """An IDX file is corrupt or not what was expected."""


def read_idx(path: str | Path, ndim: int) -> torch.Tensor:
    """The uint8 array stored in an IDX file with ``ndim`` dimensions, as a tensor."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IdxFormatError(f"{path}: corrupt gzip data ({exc}); delete the file to download it again") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()}); delete it to download again")
    type_code, file_ndim = raw[2], raw[3]
    if type_code != _UNSIGNED_BYTE:
        raise IdxFormatError(f"{path}: element type 0x{type_code:02x}, expected 0x08 (unsigned byte)")
    if file_ndim != ndim:
        raise IdxFormatError(f"{path}: {file_ndim} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header; delete the file to download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise IdxFormatError(
            f"{path}: {len(raw)} bytes, expected {expected} for shape {tuple(dims)} "
            "(truncated or padded); delete the file to download it again"
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(data.copy())


def read_images_and_labels(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, rows, cols) and labels (N,), checking that the counts agree."""
    X, y = read_idx(images, ndim=3), read_idx(labels, ndim=1)
    if len(X) != len(y):
        raise IdxFormatError(f"{images.name} holds {len(X)} images but {labels.name} holds {len(y)} labels")
    return X, y
