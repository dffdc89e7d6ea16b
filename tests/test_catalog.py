"""The models and DataModules the help texts list: exactly what the packages export, with their docstrings."""

from __future__ import annotations

import lightning as L

import lit_d2l.data
import lit_d2l.models
from lit_d2l.fit import catalog
from lit_d2l.fit.catalog import Entry


def exported_subclasses(package, base: type) -> set[str]:
    return {
        name
        for name in package.__all__
        if isinstance(getattr(package, name), type) and issubclass(getattr(package, name), base)
    }


def first_doc_line(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")


def test_models_are_the_exported_lightning_modules_less_the_abstract_bases() -> None:
    listed = catalog.MODELS
    names = {entry.name for entry in listed}
    assert exported_subclasses(lit_d2l.models, L.LightningModule) - names == {"D2LModule", "Classifier"}
    assert names <= exported_subclasses(lit_d2l.models, L.LightningModule)
    assert all(entry.summary == first_doc_line(getattr(lit_d2l.models, entry.name)) for entry in listed)
    assert {"LinearRegressionScratch", "MLP", "LeNet"} <= names


def test_datamodules_are_the_exported_datamodules_less_the_abstract_base() -> None:
    listed = catalog.DATAMODULES
    names = {entry.name for entry in listed}
    assert exported_subclasses(lit_d2l.data, L.LightningDataModule) - names == {"InMemoryDataModule"}
    assert names <= exported_subclasses(lit_d2l.data, L.LightningDataModule)
    assert all(entry.summary == first_doc_line(getattr(lit_d2l.data, entry.name)) for entry in listed)
    assert {"SyntheticRegressionData", "FashionMNIST"} <= names


def test_listing_aligns_the_summaries() -> None:
    text = catalog.listing("models", [Entry("MLP", "one"), Entry("LeNet", "two")])
    assert text.splitlines() == ["models:", "  MLP    one", "  LeNet  two"]
