"""Bad Fashion-MNIST input through ``lit-d2l fit``: one line, exit 2, and no MLflow run recorded."""

from __future__ import annotations

import gzip
import hashlib
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lit_d2l.cli.main import main
from lit_d2l.data import fashion_mnist
from tests.conftest import REPO
from tests.data.fashion_files import make_fashion_files, stalling_server
from tests.data.idx_files import write_idx
from tests.test_cli import QUIET, assert_one_error_line

CONFIG = REPO / "experiments" / "softmax_regression.yaml"
IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def bad_magic(directory: Path) -> None:
    raw = gzip.decompress((directory / IMAGES).read_bytes())
    (directory / IMAGES).write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))


def wrong_dims(directory: Path) -> None:
    write_idx(directory / LABELS, np.zeros((600, 2), dtype=np.uint8))


def truncated(directory: Path) -> None:
    raw = gzip.decompress((directory / IMAGES).read_bytes())
    (directory / IMAGES).write_bytes(gzip.compress(raw[: len(raw) - 100]))


def truncated_header(directory: Path) -> None:
    (directory / IMAGES).write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">I", 600)))


def corrupt_gzip(directory: Path) -> None:
    data = (directory / IMAGES).read_bytes()
    (directory / IMAGES).write_bytes(data[: len(data) // 2])


def fewer_labels(directory: Path) -> None:
    write_idx(directory / LABELS, np.arange(599, dtype=np.uint8) % 10)


def fit(tracking_uri: str, experiment: str, data_dir: Path, *extra: str) -> list[str]:
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(data_dir), "--trainer.accelerator", "cpu"]
    args += ["--trainer.max_epochs", "1", "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    return [*args, *QUIET, *extra]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("corrupt", "pattern"),
    [
        (bad_magic, r"train-images-idx3-ubyte\.gz: not an IDX file \(bad magic number 0102"),
        (wrong_dims, r"train-labels-idx1-ubyte\.gz: 2 dimensions, expected 1"),
        (truncated, r"train-images-idx3-ubyte\.gz: \d+ bytes, expected \d+ .*truncated or padded"),
        (truncated_header, r"train-images-idx3-ubyte\.gz: truncated header"),
        (corrupt_gzip, r"train-images-idx3-ubyte\.gz: corrupt gzip data"),
        (fewer_labels, r"holds 600 images but train-labels-idx1-ubyte\.gz holds 599 labels"),
    ],
)
def test_a_corrupt_idx_file_records_no_run(
    corrupt: Callable[[Path], None], pattern: str, tmp_path: Path, monkeypatch, tracking_uri, client, experiment, capsys
) -> None:
    directory = tmp_path / "fmnist"
    make_fashion_files(directory)
    corrupt(directory)
    # The corrupt files pass their checksums, as a file that was damaged at the source would.
    files = {
        key: (name, hashlib.md5((directory / name).read_bytes()).hexdigest())
        for key, (name, _) in fashion_mnist.FILES.items()
    }
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    code, err = run_main(fit(tracking_uri, experiment, directory, "--data.base_url", "http://127.0.0.1:9/"), capsys)
    assert_one_error_line(code, err, pattern)
    assert client.get_experiment_by_name(experiment) is None, "no run for data that could not be read"


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (["--data.base_url", "not-a-url"], r"data\.base_url must be an http:// or https:// URL .*got 'not-a-url'"),
        (["--data.base_url", "file:///srv/fashion/"], r"data\.base_url must be .*\(scheme 'file'\)"),
        (["--data.val_size", "0"], r"data\.val_size must be a count > 0 or a fraction in \(0, 1\)"),
        (["--data.val_size", "600"], r"data\.val_size must leave both splits non-empty: got 600 of 600"),
        (["--data.download_timeout", "0"], r"data\.download_timeout must be a number of seconds > 0"),
    ],
)
def test_bad_fashion_settings_record_no_run(
    override, pattern, tmp_path: Path, monkeypatch, tracking_uri, client, experiment, capsys
) -> None:
    checksums = make_fashion_files(tmp_path / "fmnist")
    files = {key: (name, checksums[name]) for key, (name, _) in fashion_mnist.FILES.items()}
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    code, err = run_main(fit(tracking_uri, experiment, tmp_path / "fmnist", *override), capsys)
    assert_one_error_line(code, err, pattern)
    assert client.get_experiment_by_name(experiment) is None


@pytest.mark.slow
def test_a_silent_mirror_ends_the_command_within_its_timeout(tmp_path: Path, tracking_uri, client, experiment, capsys):
    with stalling_server("silent") as url:
        start = time.monotonic()
        argv = fit(tracking_uri, experiment, tmp_path / "empty", "--data.base_url", url, "--data.download_timeout", "1")
        code, err = run_main(argv, capsys)
        elapsed = time.monotonic() - start
    assert_one_error_line(
        code, err, r"cannot download http://127\.0\.0\.1:\d+/\S+: not finished within the 1 s deadline"
    )
    assert "raise data.download_timeout (now 1 s per file)" in err
    assert elapsed < 1 + 10, f"{elapsed:.1f} s: one file's deadline, plus the command's start-up"
    assert client.get_experiment_by_name(experiment) is None
