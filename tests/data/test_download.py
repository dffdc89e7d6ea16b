"""The real download path, against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_d2l.data import FashionMNIST, fashion_mnist
from lit_d2l.data.download import DownloadError, download
from lit_d2l.errors import UserError
from tests.data.fashion_files import make_fashion_files, serve

NAME = "train-labels-idx1-ubyte.gz"


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch):
    """A mirror directory with small files, and FILES pointing at their checksums."""
    checksums = make_fashion_files(tmp_path / "mirror")
    files = {key: (name, checksums[name]) for key, (name, _) in fashion_mnist.FILES.items()}
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    with serve(tmp_path / "mirror") as server:
        yield server, checksums


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_good_checksum_is_downloaded_and_then_cached(mirror, tmp_path: Path) -> None:
    server, checksums = mirror
    target = tmp_path / "data" / NAME
    download(server.url + NAME, target, checksums[NAME])
    assert target.read_bytes() == (server.directory / NAME).read_bytes()
    download(server.url + NAME, target, checksums[NAME])
    assert server.requests == [NAME], "a valid file is not fetched again"


def test_bad_checksum_is_an_error_and_leaves_nothing(mirror, tmp_path: Path) -> None:
    server, _ = mirror
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(server.url + NAME, tmp_path / "data" / NAME, "0" * 32)
    assert leftovers(tmp_path / "data") == []


def test_truncated_transfer_is_an_error_and_leaves_nothing(mirror, tmp_path: Path) -> None:
    server, checksums = mirror
    server.truncate.add(NAME)
    with pytest.raises(DownloadError):
        download(server.url + NAME, tmp_path / "data" / NAME, checksums[NAME])
    assert leftovers(tmp_path / "data") == []


def test_a_corrupt_file_in_place_is_replaced(mirror, tmp_path: Path) -> None:
    server, checksums = mirror
    target = tmp_path / "data" / NAME
    target.parent.mkdir()
    target.write_bytes(b"partial garbage")
    download(server.url + NAME, target, checksums[NAME])
    assert target.read_bytes() == (server.directory / NAME).read_bytes()


def test_datamodule_downloads_splits_and_then_works_offline(mirror, tmp_path: Path) -> None:
    server, _ = mirror
    data_dir = tmp_path / "fmnist"
    data = FashionMNIST(data_dir=str(data_dir), base_url=server.url, val_size=100, batch_size=64)
    data.prepare_data()
    assert len(server.requests) == 4
    assert {name for name in leftovers(data_dir)} == {name for name, _ in fashion_mnist.FILES.values()}

    offline = FashionMNIST(data_dir=str(data_dir), base_url="http://127.0.0.1:9/", val_size=100)
    sizes = {name: len(split[0]) for name, split in offline.splits.items()}
    assert sizes == {"train": 500, "val": 100, "test": 100}
    assert len(server.requests) == 4, "files present and valid: no request"
    images, labels = next(iter(offline.train_dataloader()))
    assert images.shape == (256, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.dtype == torch.int64


def test_missing_files_and_no_network_name_the_directory_and_files(mirror, tmp_path: Path) -> None:
    data = FashionMNIST(data_dir=str(tmp_path / "empty"), base_url="http://127.0.0.1:9/")
    with pytest.raises(UserError) as error:
        data.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "empty") in message
    for name, _ in fashion_mnist.FILES.values():
        assert name in message
    assert "\n" not in message


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIT_D2L_DATA_DIR", str(tmp_path / "elsewhere"))
    assert FashionMNIST().data_dir == tmp_path / "elsewhere"
    assert FashionMNIST(data_dir="explicit").data_dir == Path("explicit")


def test_sample_figure_titles_images_with_class_names(mirror, tmp_path: Path) -> None:
    server, _ = mirror
    data = FashionMNIST(data_dir=str(tmp_path / "d"), base_url=server.url, val_size=100)
    figure = data.sample_figure(count=8)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 8 and set(titles) <= set(fashion_mnist.CLASS_NAMES)
