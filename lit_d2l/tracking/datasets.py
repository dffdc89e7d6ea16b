"""A run's data as an MLflow dataset input: the Dataset column of the runs table and the run page's Datasets.

Name: the DataModule's class. Digest: a hash of what decides the examples of every split (generator
settings and seed, or the files' checksums, and the split settings): two runs with one digest saw the
same train/val/test examples. Source: a URL, or the code that makes the data. Profile: the split sizes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset
from mlflow.types import Schema, TensorSpec

#: The input tag MLflow shows as the dataset's context, per Lightning stage.
CONTEXTS = {"fit": "training", "validate": "validation", "test": "testing"}


def dataset_of(datamodule: Any) -> Dataset:
    """The MLflow dataset entity of ``datamodule`` (a lit-d2l DataModule, or any LightningDataModule)."""
    name = type(datamodule).__name__
    identity = _call(datamodule, "dataset_identity", lambda: dict(getattr(datamodule, "hparams", {})))
    where = _call(datamodule, "dataset_source", lambda: f"{type(datamodule).__module__}.{name}")
    web = where.startswith(("http://", "https://"))
    source = HTTPDatasetSource(where) if web else CodeDatasetSource({"source": where})
    profile: dict[str, Any] = _call(datamodule, "split_sizes", dict)
    if getattr(datamodule, "num_folds", 1) > 1:
        profile |= {"fold": datamodule.fold, "num_folds": datamodule.num_folds}
    return Dataset(
        name=name,
        digest=digest(identity),
        source_type="http" if web else "code",
        source=source.to_json(),
        schema=_schema(datamodule),
        profile=json.dumps(profile),
    )


def digest(identity: dict[str, Any]) -> str:
    """A short hash of ``identity``, independent of key order."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _call(datamodule: Any, method: str, fallback: Any) -> Any:
    found = getattr(datamodule, method, None)
    return found() if callable(found) else fallback()


def _schema(datamodule: Any) -> str | None:
    """The shapes and dtypes the model sees (one transformed example of the training split), as MLflow's tensor
    schema; None for a DataModule that holds no splits."""
    splits, transform = getattr(datamodule, "splits", None), getattr(datamodule, "transform_batch", None)
    if not isinstance(splits, dict) or "train" not in splits or not callable(transform):
        return None
    tensors = transform(tuple(t[:1] for t in splits["train"]))
    specs = [TensorSpec(t.cpu().numpy().dtype, (-1, *t.shape[1:])) for t in tensors]
    schema = TensorDatasetSchema(features=Schema(specs[:1]), targets=Schema(specs[1:]) if specs[1:] else None)
    return json.dumps(schema.to_dict())
