"""UCI handwritten digits, as scikit-learn ships them: 1,797 8×8 images of 0–9, offline (D2L 5.6's dropout
study on real data that needs no download)."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import torch
from matplotlib.figure import Figure

from lit_d2l.data.base import InMemoryDataModule, Split
from lit_d2l.data.batches import Batch
from lit_d2l.data.figures import show_images
from lit_d2l.data.splits import holdout_indices
from lit_d2l.errors import require
from lit_d2l.seeding import derive_seed

#: The test split's seed: the same 360 images for every ``data.seed``, as Fashion-MNIST's official test set.
TEST_SPLIT_SEED = derive_seed(0, "data")


class Digits(InMemoryDataModule):
    """``sklearn.datasets.load_digits``: pixels 0–16 scaled to [0, 1], shaped (B, 1, 8, 8); stratified splits.

    ``test_size`` images (the same for every seed) are held out for testing, ``val_size`` of the rest
    validate (stratified, drawn from ``data.seed``), and the rest train; ``num_train`` keeps only that
    many of them (stratified too), for a small training set that a wide network overfits. Sizes are
    counts or fractions (of all 1,797 images for ``test_size``, of the remaining ones for ``val_size``).
    """

    num_inputs = 8 * 8
    num_outputs = 10

    def __init__(
        self,
        val_size: int | float = 360,
        test_size: int | float = 360,
        num_train: int | None = None,
        batch_size: int = 32,
        **kwargs: Any,  # seed, num_folds, fold, loader, shuffle_seed: see InMemoryDataModule
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        for name, size in (("val_size", val_size), ("test_size", test_size)):
            require(
                0 < size < 1 if isinstance(size, float) else size > 0,
                f"data.{name} must be a count > 0 or a fraction in (0, 1), got {size}",
            )
        require(num_train is None or num_train > 0, f"data.num_train must be > 0 (or null for all), got {num_train}")
        self.val_size, self.test_size, self.num_train = val_size, test_size, num_train

    def build_splits(self) -> dict[str, Split]:
        X, y = load()
        rest, test = holdout_indices(y, self.test_size, TEST_SPLIT_SEED)
        val_seed, train_seed = torch.randint(2**31 - 1, (2,), generator=self.data_generator()).tolist()
        train, val = (rest[i] for i in holdout_indices(y[rest], self.val_size, val_seed))
        if self.num_train is not None:
            require(
                self.num_train <= len(train),
                f"data.num_train must be at most the {len(train)} images left for training, got {self.num_train}",
            )
            if self.num_train < len(train):
                _, kept = holdout_indices(y[train], self.num_train, train_seed)
                train = train[kept]
        return {"train": (X[train], y[train]), "val": (X[val], y[val]), "test": (X[test], y[test])}

    def transform_batch(self, batch: Batch) -> Batch:
        images, labels = batch
        return images.unsqueeze(1).float().div_(16), labels

    def dataset_source(self) -> str:
        return "sklearn.datasets.load_digits"

    def dataset_identity(self) -> dict[str, Any]:
        """The split settings and a hash of the images and labels scikit-learn ships."""
        return {**super().dataset_identity(), "sha256": content_hash()}

    def sample_figure(self, count: int = 16) -> Figure:
        """A grid of training images with their labels."""
        images, labels = self.splits["train"][0][:count], self.splits["train"][1][:count]
        return show_images(images, [str(int(label)) for label in labels])


@functools.cache  # read once per process: sweeps and folds build many DataModules
def load() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images (uint8, 0–16, shaped N × 8 × 8) and their labels."""
    from sklearn.datasets import load_digits  # imported here: seconds, and only this dataset needs it

    images, labels = load_digits(return_X_y=True)
    return torch.as_tensor(images, dtype=torch.uint8).reshape(-1, 8, 8), torch.as_tensor(labels, dtype=torch.long)


@functools.cache
def content_hash() -> str:
    """SHA-256 of all 1,797 images and labels, as :func:`load` returns them."""
    images, labels = load()
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
