"""The arguments every DataModule shares are declared once, on InMemoryDataModule, yet still reach the CLI."""

from __future__ import annotations

import pytest
from jsonargparse import ArgumentParser

from lit_d2l.data import FashionMNIST, GaussianClusters, HighDimLinearData, PolynomialData, SyntheticRegressionData

SHARED = {"seed": 0, "num_folds": 1, "fold": 0, "loader": "tensor"}
BATCH_SIZES = {
    SyntheticRegressionData: 32,
    HighDimLinearData: 5,
    PolynomialData: 10,
    GaussianClusters: 64,
    FashionMNIST: 256,
}


@pytest.mark.parametrize("cls", list(BATCH_SIZES), ids=lambda cls: cls.__name__)
def test_the_cli_lists_the_shared_arguments_with_each_datasets_defaults(cls) -> None:
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    defaults = parser.get_defaults().data
    assert {key: defaults[key] for key in SHARED} == SHARED
    assert defaults["batch_size"] == BATCH_SIZES[cls]


def test_hparams_record_the_shared_arguments_given_or_not() -> None:
    data = HighDimLinearData(num_inputs=3, seed=5, loader="dataloader")
    assert {key: data.hparams[key] for key in ("num_inputs", "batch_size", "seed", "num_folds", "fold", "loader")} == {
        "num_inputs": 3,
        "batch_size": 5,
        "seed": 5,
        "num_folds": 1,
        "fold": 0,
        "loader": "dataloader",
    }
    assert (data.seed, data.loader) == (5, "dataloader")
