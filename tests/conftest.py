"""Shared fixtures: one SQLite tracking store per test session (creating one costs seconds of migrations)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
from mlflow.tracking import MlflowClient

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

REPO = Path(__file__).resolve().parents[1]
LINEAR_CONFIG = REPO / "experiments" / "linear_regression.yaml"


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = tmp_path_factory.mktemp("mlruns") / "mlflow.db"
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # create the schema once
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
