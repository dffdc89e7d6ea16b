"""Fashion-MNIST (D2L 4.2): download with checksums, a stratified validation split, fast batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lit_d2l.data.base import InMemoryDataModule, Split
from lit_d2l.data.batches import Batch
from lit_d2l.data.download import DownloadError, download, is_valid
from lit_d2l.data.figures import show_images
from lit_d2l.data.idx import read_images_and_labels
from lit_d2l.data.splits import holdout_indices
from lit_d2l.errors import UserError

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
CLASS_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
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
        **kwargs: Any,  # seed, num_folds, fold, loader: see InMemoryDataModule
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.data_dir = Path(data_dir or os.environ.get("LIT_D2L_DATA_DIR") or DEFAULT_DATA_DIR)
        self.val_size = val_size
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.download = download
        self.class_names = CLASS_NAMES
        self._verified = False  # the four files' MD5s checked by this instance (reading 30 MB once, not twice)

    num_inputs = 28 * 28
    num_outputs = len(CLASS_NAMES)

    def prepare_data(self) -> None:
        """Fetch whatever is missing or invalid (rank 0 only); with all four files valid, no network is used."""
        missing = self._missing_files()
        if not missing:
            self._verified = True
            return
        if not self.download:
            raise UserError(self._place_files_message("download is off (data.download=false)"))
        for name, md5 in missing:
            try:
                download(self.base_url + name, self.data_dir / name, md5)
            except DownloadError as exc:
                raise UserError(f"{exc}. {self._place_files_message('offline?')}") from None
        self._verified = True  # each download was checked against its MD5 before it was kept

    def build_splits(self) -> dict[str, Split]:
        if self.trainer is None:  # used directly; under a Trainer, Lightning calls prepare_data on rank 0 first
            self.prepare_data()
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
