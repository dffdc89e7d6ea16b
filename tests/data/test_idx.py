import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_d2l.data.idx import IdxFormatError, read_idx, read_images_and_labels
from tests.data.idx_files import write_idx


def header(type_code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x", array, compress=compress)
    assert torch.equal(read_idx(tmp_path / "x", ndim=3), torch.from_numpy(array))


@pytest.mark.parametrize(
    ("content", "ndim", "message"),
    [
        (b"\x01\x02\x08\x03" + b"\x00" * 40, 3, "bad magic number"),
        (header(0x0D, (2, 2, 2)) + b"\x00" * 32, 3, "element type 0x0d"),
        (header(0x08, (4, 28)) + b"\x00" * 112, 3, "2 dimensions, expected 3"),
        (header(0x08, (2, 28, 28)) + b"\x00" * 1000, 3, r"1016 bytes, expected 1584 .*truncated"),
        (header(0x08, (3,)) + b"\x00" * 5, 1, r"expected 11 .*padded"),
        (b"\x00\x00\x08\x03\x00\x00", 3, "truncated header"),
    ],
)
def test_corrupt_files_say_what_is_wrong(tmp_path: Path, content: bytes, ndim: int, message: str) -> None:
    path = tmp_path / "bad-idx.gz"
    path.write_bytes(gzip.compress(content))
    with pytest.raises(IdxFormatError, match=message) as error:
        read_idx(path, ndim=ndim)
    assert "bad-idx.gz" in str(error.value)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(header(0x08, (3,)) + b"abc")[:-6])
    with pytest.raises(IdxFormatError, match=r"broken\.gz: corrupt gzip"):
        read_idx(path, ndim=1)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    write_idx(tmp_path / "images", np.zeros((4, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "labels", np.zeros(5, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="holds 4 images but labels holds 5 labels"):
        read_images_and_labels(tmp_path / "images", tmp_path / "labels")
