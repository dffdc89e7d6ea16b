"""The real download path, against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from lit_d2l.data import FashionMNIST, fashion_mnist
from lit_d2l.data.download import DownloadError, DownloadTimeout, download
from lit_d2l.errors import ConfigError, UserError
from tests.data.fashion_files import make_fashion_files, serve, stalling_server

NAME = "train-labels-idx1-ubyte.gz"
DEADLINE_S = 1.0
MARGIN_S = 3.0  # start-up of the request and the thread that ends it, on a loaded machine


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


@pytest.mark.slow
@pytest.mark.parametrize("behaviour", ["silent", "trickle", "trickle-headers"])
def test_a_stalling_mirror_fails_within_the_deadline(behaviour: str, tmp_path: Path) -> None:
    with stalling_server(behaviour) as url:
        start = time.monotonic()
        with pytest.raises(DownloadTimeout) as error:
            download(url + NAME, tmp_path / "data" / NAME, "0" * 32, deadline_s=DEADLINE_S)
        elapsed = time.monotonic() - start
    assert DEADLINE_S - 0.05 <= elapsed < DEADLINE_S + MARGIN_S, f"{behaviour}: failed after {elapsed:.2f} s"
    message = str(error.value)
    assert url + NAME in message and f"within the {DEADLINE_S:g} s deadline" in message and "\n" not in message
    assert leftovers(tmp_path / "data") == [], "no part file left behind"


@pytest.mark.slow
def test_the_datamodule_passes_its_download_timeout_and_names_it(tmp_path: Path) -> None:
    with stalling_server("trickle") as url:
        data = FashionMNIST(data_dir=str(tmp_path / "d"), base_url=url, download_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(UserError, match=r"raise data\.download_timeout \(now 1 s per file\)"):
            data.prepare_data()
        assert time.monotonic() - start < 1.0 + MARGIN_S


def test_stale_part_files_of_the_file_are_removed_fresh_ones_kept(mirror, tmp_path: Path) -> None:
    server, checksums = mirror
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stale, fresh = data_dir / f".{NAME}.killed.part", data_dir / f".{NAME}.running.part"
    other = data_dir / ".t10k-labels-idx1-ubyte.gz.killed.part"
    for part in (stale, fresh, other):
        part.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    for part in (stale, other):
        os.utime(part, (an_hour_ago, an_hour_ago))
    download(server.url + NAME, data_dir / NAME, checksums[NAME], deadline_s=600)
    assert leftovers(data_dir) == sorted([fresh.name, other.name, NAME]), "only the file's own stale part goes"


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_downloaded_file_has_the_mode_of_any_new_file(umask: int, mirror, tmp_path: Path) -> None:
    server, checksums = mirror
    previous = os.umask(umask)
    try:
        download(server.url + NAME, tmp_path / NAME, checksums[NAME])
    finally:
        os.umask(previous)
    assert (tmp_path / NAME).stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("not-a-url", "no scheme"),
        ("file:///srv/fashion/", "scheme 'file'"),
        ("ftp://mirror.example/fashion/", "scheme 'ftp'"),
        ("data:text/plain,hello", "scheme 'data'"),
        ("http://", "no host"),
        ("https:///fashion/", "no host"),
        ("http://host:port/", "Port could not be cast"),
        ("http://mirror.example/fash ion/", "spaces or control characters"),
    ],
)
def test_base_url_must_be_http_with_a_host(base_url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.base_url must be an http:// or https:// URL with a host") as error:
        FashionMNIST(base_url=base_url)
    assert problem in str(error.value) and "\n" not in str(error.value)
    assert (
        FashionMNIST(base_url="https://mirror.example:8443/fashion").base_url == "https://mirror.example:8443/fashion/"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": 0}, "data.val_size must be a count > 0 or a fraction in"),
        ({"val_size": 1.0}, "data.val_size must be"),
        ({"val_size": -0.5}, "data.val_size must be"),
        ({"download_timeout": 0.0}, "data.download_timeout must be a number of seconds > 0"),
        ({"download_timeout": float("inf")}, "data.download_timeout must be"),
        ({"download_timeout": float("nan")}, "data.download_timeout must be"),
    ],
)
def test_bad_split_and_timeout_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FashionMNIST(**kwargs)
