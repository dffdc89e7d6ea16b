"""The DataModule every lit-d2l dataset builds on: splits held as tensors, served as fast minibatches."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_d2l.data.batches import Batch, TensorBatches
from lit_d2l.data.splits import kfold_indices
from lit_d2l.errors import require
from lit_d2l.seeding import derive_seed, stream_seed

Split = tuple[Tensor, ...]
Loader = Literal["tensor", "dataloader"]


class InMemoryDataModule(L.LightningDataModule):
    """Holds ``train``/``val``/``test`` splits in memory; subclasses implement :meth:`build_splits`.

    With ``num_folds`` = K > 1, the train and validation splits are pooled and cut into K folds;
    fold ``fold`` validates and the other K - 1 train (D2L 5.7). The test split is never touched.
    ``loader="tensor"`` (default) serves batches by slicing whole-split tensors, on the GPU when
    training there; ``loader="dataloader"`` uses a per-example ``Dataset`` + ``DataLoader``.

    The arguments below are shared by every dataset and declared here only: subclasses take them as
    ``**kwargs`` passed on to ``super().__init__(**kwargs)``, which jsonargparse follows, so
    ``lit-d2l fit --data.help CLASS`` and ``--print_config`` still list them. A subclass whose
    default ``batch_size`` differs declares that one argument itself. Every constructor argument,
    the subclass's own included, is recorded in ``hparams``.

    Args:
        batch_size: examples per minibatch: the global batch, which DDP's W processes share, B / W each.
        seed: the data's seed: generation, splits and folds draw from a stream derived from it
            (:mod:`lit_d2l.seeding`), independent of the model's initialisation.
        shuffle_seed: pins the minibatch order; by default it is derived from seed_everything
            (or from ``seed`` when no run seed is set).
        num_folds: K > 1 for K-fold cross-validation; 1 for none.
        fold: which fold validates, in [0, num_folds).
        loader: "tensor" (slices of in-memory tensors) or "dataloader" (a standard DataLoader).
    """

    def __init__(
        self,
        batch_size: int = 32,
        seed: int = 0,
        num_folds: int = 1,
        fold: int = 0,
        loader: Loader = "tensor",
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        # Records the arguments of this constructor and of every subclass constructor calling it.
        self.save_hyperparameters()
        require(batch_size > 0, f"data.batch_size must be > 0, got {batch_size}")
        require(num_folds >= 1, f"data.num_folds must be >= 1 (1 = no cross-validation), got {num_folds}")
        require(0 <= fold < num_folds, f"data.fold must be in [0, data.num_folds={num_folds}), got {fold}")
        require(loader in ("tensor", "dataloader"), f"data.loader must be 'tensor' or 'dataloader', got {loader!r}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_folds = num_folds
        self.fold = fold
        self.loader = loader
        self.pinned_shuffle_seed = shuffle_seed
        self._splits: dict[str, Split] | None = None

    def build_splits(self) -> dict[str, Split]:
        """Return the ``train``, ``val`` and (possibly empty) ``test`` splits as tuples of tensors."""
        raise NotImplementedError

    @property
    def splits(self) -> dict[str, Split]:
        if self._splits is None:
            splits = self.build_splits()
            if self.num_folds > 1:
                splits = self._fold_splits(splits)
            self._splits = splits
        return self._splits

    def prepare_data(self) -> None:
        """Build the splits, and check those this stage uses are not empty, before anything is recorded.

        Lightning calls this hook first (on rank 0 of each node); the MLflow run is created on the way
        to the setup hooks, so a corrupt file or an empty split raised here leaves no run behind.
        """
        splits = self.splits
        for split in self._stage_splits():
            require(len(splits[split][0]) > 0, _empty_split_message(split))

    def setup(self, stage: str | None = None) -> None:
        _ = self.splits

    def train_dataloader(self) -> TensorBatches | DataLoader:
        return self.batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self.batches("val")

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self.batches("test")

    def batches(self, split: str, shuffle: bool = False) -> TensorBatches | DataLoader:
        """Minibatches of one split, sharded for this process's DDP rank: ``batch_size`` / W examples each,
        so the W ranks' batches of one step make up one global batch of ``batch_size`` (see
        :mod:`lit_d2l.data.batches`)."""
        tensors = self.splits[split]
        require(len(tensors[0]) > 0, _empty_split_message(split))
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        batch_size = self.rank_batch_size(world_size)
        if world_size > 1:
            _check_shardable(split, len(tensors[0]), world_size, training=shuffle)
        if self.loader == "dataloader":
            # Lightning adds a DistributedSampler under DDP and reseeds it every epoch.
            return DataLoader(_Examples(tensors, self), batch_size=batch_size, shuffle=shuffle)
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        if device.type != "cpu":  # hold the split on the accelerator once, instead of copying every batch
            tensors = tuple(t.to(device) for t in tensors)
        return TensorBatches(
            tensors,
            batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            rank=rank,
            world_size=world_size,
            transform=self.transform_batch,
            pad=shuffle,  # training shards are padded to equal length; evaluation counts each example once
        )

    def rank_batch_size(self, world_size: int) -> int:
        """One process's share of the global ``batch_size`` when ``world_size`` processes train together."""
        require(
            self.batch_size % world_size == 0,
            f"data.batch_size {self.batch_size} is the global batch, shared by {world_size} processes "
            f"(trainer.devices x trainer.num_nodes): make it a multiple of {world_size}",
        )
        return self.batch_size // world_size

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches sliced from tensors already on ``device`` (the default loader) pass straight through."""
        if isinstance(batch, tuple) and all(isinstance(t, Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @property
    def shuffle_seed(self) -> int:
        """The minibatch order's seed: pinned, or derived from the run's seed (the same on every rank)."""
        return stream_seed("shuffle", self.pinned_shuffle_seed, fallback=self.seed)

    @property
    def data_seed(self) -> int:
        """The seed of data generation and splits, derived from ``seed`` (:mod:`lit_d2l.seeding`)."""
        return derive_seed(self.seed, "data")

    def data_generator(self) -> torch.Generator:
        """A fresh CPU generator on the data stream: the same ``seed`` gives the same data."""
        return torch.Generator().manual_seed(self.data_seed)

    def random_seeds(self) -> dict[str, int]:
        """The seeds this DataModule's streams use, for the run record."""
        return {"data": self.data_seed, "shuffle": self.shuffle_seed}

    def transform_batch(self, batch: Batch) -> Batch:
        """Per-batch preprocessing (e.g. scaling); identity by default."""
        return batch

    # -- what the data is: the run's MLflow dataset input (lit_d2l.tracking.datasets) --

    #: Constructor arguments that change how the examples are served or found, not which examples each split holds.
    NOT_DATA_ARGS: frozenset[str] = frozenset({"batch_size", "loader", "shuffle_seed"})

    def dataset_source(self) -> str:
        """Where the examples come from: a URL, a function, or ``synthetic:<class>`` for data generated here."""
        return f"synthetic:{type(self).__name__}"

    def dataset_identity(self) -> dict[str, Any]:
        """What decides the examples of every split (the dataset digest hashes it): for generated data its
        settings and seed; the same identity, the same train/val/test examples. (LightningCLI adds ``_class_path``
        and ``_instantiator`` to ``hparams``: a DataModule built directly has the same identity.)"""
        return {k: v for k, v in self.hparams.items() if k not in self.NOT_DATA_ARGS and not k.startswith("_")}

    def split_sizes(self) -> dict[str, int]:
        """Examples per split (of this fold under K-fold); builds the splits if needed."""
        return {split: len(tensors[0]) for split, tensors in self.splits.items()}

    def require_split_sizes(self, num_train: int, num_val: int, num_test: int) -> None:
        """Refuse sizes that leave the training or validation split empty (the test split may be: only
        testing uses it). Under K-fold, train and val are pooled and must hold at least K examples."""
        require(num_train > 0, f"data.num_train must be > 0, got {num_train}")
        require(num_val >= 0 and num_test >= 0, "data.num_val and data.num_test must be >= 0")
        if self.num_folds > 1:
            require(
                num_train + num_val >= self.num_folds,
                f"data.num_train + data.num_val ({num_train + num_val}) must be >= data.num_folds ({self.num_folds})",
            )
        else:
            require(num_val > 0, f"data.num_val must be > 0 (the validation split), got {num_val}")

    def _stage_splits(self) -> tuple[str, ...]:
        """The splits the attached Trainer's current stage reads (none outside a Trainer)."""
        trainer = self.trainer
        stage = trainer.state.fn if trainer is not None else None
        if stage == "fit":
            return ("train",) if trainer.limit_val_batches == 0 else ("train", "val")
        if stage == "validate":
            return ("val",)
        return ("test",) if stage == "test" else ()

    def _fold_splits(self, splits: dict[str, Split]) -> dict[str, Split]:
        pool = tuple(torch.cat(parts) for parts in zip(splits["train"], splits["val"], strict=True))
        train, val = kfold_indices(len(pool[0]), self.num_folds, self.fold, self.data_seed)
        return {"train": tuple(t[train] for t in pool), "val": tuple(t[val] for t in pool), "test": splits["test"]}


def consecutive_splits(tensors: Split, num_train: int, num_val: int) -> dict[str, Split]:
    """The first ``num_train`` rows train, the next ``num_val`` validate, the rest test (rows are i.i.d.)."""
    ends = (num_train, num_train + num_val)
    return {
        "train": tuple(t[: ends[0]] for t in tensors),
        "val": tuple(t[ends[0] : ends[1]] for t in tensors),
        "test": tuple(t[ends[1] :] for t in tensors),
    }


def _check_shardable(split: str, size: int, world_size: int, training: bool) -> None:
    """Every rank needs an example of each split; a training split W does not divide is padded (warned)."""
    require(
        size >= world_size,
        f"the {split} split has {size} examples, fewer than the {world_size} DDP processes: "
        "make it larger, or use fewer devices",
    )
    if training and size % world_size:
        rank_zero_warn(
            f"the {split} split's {size} examples are not a multiple of the {world_size} DDP processes: "
            f"the last step of every epoch repeats {world_size - size % world_size} of them, so this fit "
            "is not exactly the one-process fit (a training split that is a multiple of the world size is)"
        )


def _empty_split_message(split: str) -> str:
    return f"the {split} split is empty; give data.num_{split} a positive size"


class _Examples(Dataset):
    """Per-example view of a split, for the standard DataLoader path."""

    def __init__(self, tensors: Split, datamodule: InMemoryDataModule) -> None:
        self.tensors = tensors
        self.datamodule = datamodule

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> Batch:
        example = tuple(t[index : index + 1] for t in self.tensors)
        return tuple(t[0] for t in self.datamodule.transform_batch(example))
