"""Shared fixtures: one SQLite tracking store per test session (creating one costs seconds of migrations)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# The tests train tiny models: one torch thread each beats a pool whose threads wait on one another,
# most of all on a busy machine (tests/models/test_mlp.py: 27 s with 2 threads, 4 s with 1, on 2 cores).
# Set before torch loads, so the processes the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import alembic
import lightning as L
import mlflow
import pytest
import sqlalchemy
import torch
from mlflow.tracking import MlflowClient

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

REPO = Path(__file__).resolve().parents[1]
LINEAR_CONFIG = REPO / "experiments" / "linear_regression.yaml"


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> str:
    store = tmp_path_factory.mktemp("mlruns") / "mlflow.db"
    template = _empty_store(pytestconfig)
    if template is not None and template.is_file():
        shutil.copyfile(template, store)
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # creates the schema, unless the copy has it
    if template is not None and not template.is_file():
        partial = template.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(store, partial)
        os.replace(partial, template)
    return uri


def _empty_store(config: pytest.Config) -> Path | None:
    """Where pytest's cache keeps a new store's database: MLflow's schema migrations take seconds, once per
    MLflow, SQLAlchemy and alembic version (and working directory, which the Default experiment records)."""
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    if cache is None:
        return None
    versions = f"{mlflow.__version__} {sqlalchemy.__version__} {alembic.__version__} {os.getcwd()}"
    return cache.mkdir("mlflow-schema") / f"{hashlib.sha256(versions.encode()).hexdigest()[:16]}.db"


@pytest.fixture
def new_tracking_uri(tracking_uri: str, tmp_path: Path, pytestconfig: pytest.Config) -> str:
    """A store of its own with no runs yet: a copy of the new store the session started from (else made anew)."""
    store = tmp_path / "new-store" / "mlflow.db"
    store.parent.mkdir()
    template = _empty_store(pytestconfig)
    if template is not None and template.is_file():
        shutil.copyfile(template, store)
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # creates the schema, unless the copy has it
    return uri


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so tests sharing the store never see each other's runs."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def quiet_trainer() -> Iterator[dict]:
    """Trainer settings for fast, silent test fits."""
    yield {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }


def linear_fit_args(tracking_uri: str, experiment: str, *extra: str) -> list[str]:
    """``fit`` arguments for the linear-regression config, recorded in ``experiment``, quietly."""
    return [
        "--config",
        str(LINEAR_CONFIG),
        "--tracking.uri",
        tracking_uri,
        "--tracking.experiment",
        experiment,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


def only_run(client: MlflowClient, experiment: str):
    """The single run of an experiment (fails if there is not exactly one)."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.status for r in runs]
    return runs[0]


def seed(value: int = 0) -> None:
    L.seed_everything(value, verbose=False)
