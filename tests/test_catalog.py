"""The models and DataModules the help texts list: read from source, equal to what the packages export."""

from __future__ import annotations

from pathlib import Path

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
    listed = catalog.models()
    names = {entry.name for entry in listed}
    assert exported_subclasses(lit_d2l.models, L.LightningModule) - names == {"D2LModule", "Classifier"}
    assert names <= exported_subclasses(lit_d2l.models, L.LightningModule)
    assert all(entry.summary == first_doc_line(getattr(lit_d2l.models, entry.name)) for entry in listed)
    assert {"LinearRegressionScratch", "MLP", "LeNet"} <= names


def test_datamodules_are_the_exported_datamodules_less_the_abstract_base() -> None:
    listed = catalog.datamodules()
    names = {entry.name for entry in listed}
    assert exported_subclasses(lit_d2l.data, L.LightningDataModule) - names == {"InMemoryDataModule"}
    assert names <= exported_subclasses(lit_d2l.data, L.LightningDataModule)
    assert all(entry.summary == first_doc_line(getattr(lit_d2l.data, entry.name)) for entry in listed)
    assert {"SyntheticRegressionData", "FashionMNIST"} <= names


PACKAGE = '''
import lightning as L


class Base(L.LightningModule):
    """An abstract base."""

    def build(self):
        raise NotImplementedError("subclasses build")


class Half(Base):
    """Still abstract: build is not defined."""

    def forward(self, x):
        return x


class Done(Half):
    """A usable model.

    More text.
    """

    def build(self):
        self.layer = None


class Hidden(Base):
    """Usable, but not exported."""

    def build(self):
        pass


class Helper:
    """Not a LightningModule."""
'''


def test_a_class_is_listed_when_exported_derived_from_the_root_and_concrete(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(PACKAGE)
    (tmp_path / "__init__.py").write_text(
        "from .nets import Base, Done, Half, Helper\n__all__ = ['Helper', 'Done', 'Half', 'Base']\n"
    )
    assert catalog.usable_classes(tmp_path, "LightningModule") == [Entry("Done", "A usable model.")]
    assert catalog.usable_classes(tmp_path, "LightningDataModule") == []


def test_listing_aligns_the_summaries() -> None:
    text = catalog.listing("models", [Entry("MLP", "one"), Entry("LeNet", "two")])
    assert text.splitlines() == ["models:", "  MLP    one", "  LeNet  two"]
