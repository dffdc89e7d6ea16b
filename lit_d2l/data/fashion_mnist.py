"""Fashion-MNIST (D2L 4.2): download with checksums, a stratified validation split, fast batches."""

from __future__ import annotations

import math
import os
import urllib.parse
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lit_d2l.data.base import InMemoryDataModule, Split
from lit_d2l.data.batches import Batch
from lit_d2l.data.download import DEFAULT_DEADLINE_S, DownloadError, DownloadTimeout, download, is_valid
from lit_d2l.data.figures import show_images
from lit_d2l.data.idx import read_images_and_labels
from lit_d2l.data.splits import holdout_indices
from lit_d2l.errors import UserError, require

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
DEFAULT_DATA_DIR = "data/fashion_mnist"


class FashionMNIST(InMemoryDataModule):
    """The 60,000 training images split into train/val (stratified, seeded); test = the official 10,000.

    Images stay uint8 in memory and become float in [0, 1], shaped (B, 1, 28, 28), one batch at a time.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 256,
        val_size: int | float = 5000,
        base_url: str = BASE_URL,
        download: bool = True,
        download_timeout: float = DEFAULT_DEADLINE_S,
        **kwargs: Any,  # seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        require_val_size(val_size)
        require_http_url(base_url)
        require(
            math.isfinite(download_timeout) and download_timeout > 0,
            f"data.download_timeout must be a number of seconds > 0 (per file), got {download_timeout}",
        )
        self.data_dir = Path(data_dir or os.environ.get("LIT_D2L_DATA_DIR") or DEFAULT_DATA_DIR)
        self.val_size = val_size
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.download = download
        self.download_timeout = download_timeout
        self.class_names = CLASS_NAMES
        self._verified = False  # the four files' MD5s checked by this instance (reading 30 MB once, not twice)

    num_inputs = 28 * 28
    num_outputs = len(CLASS_NAMES)
    #: Where the files are and how they are fetched: the same four files (by MD5) are the same data.
    NOT_DATA_ARGS = InMemoryDataModule.NOT_DATA_ARGS | {"data_dir", "base_url", "download", "download_timeout"}

    def dataset_source(self) -> str:
        return self.base_url

    def dataset_identity(self) -> dict[str, Any]:
        """The split settings and the four files' MD5s (a file is used only once its MD5 matches)."""
        return {**super().dataset_identity(), "md5": {name: md5 for name, md5 in FILES.values()}}

    def prepare_data(self) -> None:
        """Fetch whatever is missing or invalid (rank 0 only; with all four files valid, no network is
        used), then read them: a corrupt file fails here, before the run is recorded."""
        self.fetch()
        super().prepare_data()

    def fetch(self) -> None:
        """Download the files that are missing or fail their MD5, once per instance."""
        if self._verified:
            return
        missing = self._missing_files()
        if missing and not self.download:
            raise UserError(self._place_files_message("download is off (data.download=false)"))
        for name, md5 in missing:
            try:
                download(self.base_url + name, self.data_dir / name, md5, deadline_s=self.download_timeout)
            except DownloadTimeout as exc:
                hint = f"or raise data.download_timeout (now {self.download_timeout:g} s per file)"
                raise UserError(f"{exc}. {self._place_files_message('download too slow')}, {hint}") from None
            except DownloadError as exc:
                raise UserError(f"{exc}. {self._place_files_message('offline?')}") from None
        self._verified = True  # each download was checked against its MD5 before it was kept

    def build_splits(self) -> dict[str, Split]:
        if self.trainer is None:  # used directly; under a Trainer, Lightning calls prepare_data on rank 0 first
            self.fetch()
        elif not self._verified and self._missing_files():  # other DDP ranks check what rank 0 fetched
            raise UserError(self._place_files_message("rank 0 could not fetch them"))
        paths = {key: self.data_dir / name for key, (name, _) in FILES.items()}
        X, y = read_images_and_labels(paths["train_images"], paths["train_labels"])
        X_test, y_test = read_images_and_labels(paths["test_images"], paths["test_labels"])
        train, val = holdout_indices(y, self.val_size, self.data_seed)
        return {"train": (X[train], y[train]), "val": (X[val], y[val]), "test": (X_test, y_test)}

    def sample_figure(self, count: int = 16) -> Figure:
        """D2L's grid of training images with their text labels."""
        images, labels = self.splits["train"][0][:count], self.splits["train"][1][:count]
        return show_images(images, self.text_labels(labels))

    def transform_batch(self, batch: Batch) -> Batch:
        images, labels = batch
        return images.unsqueeze(1).float().div_(255), labels.long()

    def text_labels(self, indices: torch.Tensor) -> list[str]:
        return [self.class_names[int(i)] for i in indices]

    def _missing_files(self) -> list[tuple[str, str]]:
        return [(name, md5) for name, md5 in FILES.values() if not is_valid(self.data_dir / name, md5)]

    def _place_files_message(self, why: str) -> str:
        names = ", ".join(name for name, _ in FILES.values())
        return f"Fashion-MNIST is not complete in {self.data_dir} ({why}): place {names} there, or set data.base_url"


def require_http_url(url: str) -> None:
    """``data.base_url`` must be an http(s) URL with a host: the files are fetched from ``url + name``."""
    problem = None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        elif not parts.hostname:
            problem = "no host"
        elif any(c.isspace() or not c.isprintable() for c in url):
            problem = "spaces or control characters"
    require(
        problem is None,
        f"data.base_url must be an http:// or https:// URL with a host, like {BASE_URL}; got {url!r} ({problem}). "
        "For files you already have, set data.data_dir to their directory",
    )


def require_val_size(val_size: int | float) -> None:
    """``data.val_size``: a count > 0 or a fraction in (0, 1) of the 60,000 training images."""
    require(
        0 < val_size < 1 if isinstance(val_size, float) else val_size > 0,
        f"data.val_size must be a count > 0 or a fraction in (0, 1) of the training images, got {val_size}",
    )
