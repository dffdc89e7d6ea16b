"""Records what a CLI run was: its resolved config (artifact + flattened params) and identifying tags."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

import lit_d2l
from lit_d2l.seeding import run_seed
from lit_d2l.tracking.datasets import CONTEXTS, dataset_of
from lit_d2l.tracking.logger import TrackingLogger

CONFIG_ARTIFACT = "config.yaml"
SAMPLES_ARTIFACT = "data_samples.png"


class RunRecorder(SaveConfigCallback):
    """LightningCLI's config saver, writing to the MLflow run instead of a log directory.

    A resumed fit (one given a ``--ckpt_path``) is recorded once training starts: only then has Lightning restored
    the checkpoint and accepted the settings, so a resume it refuses (say, ``trainer.max_epochs`` below the
    checkpoint's epoch) leaves the run's ``config.yaml`` as it was, and the next ``--resume`` reads that.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)
        self._resume_to_record = False

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(trainer.logger, TrackingLogger):
            return
        self._resume_to_record = stage == "fit" and self.config.get("ckpt_path") is not None
        if not self._resume_to_record:
            self._record(trainer, pl_module, stage)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resume_to_record:  # set on global rank zero only, as save_config runs there alone
            self._resume_to_record = False
            self._record(trainer, pl_module, "fit")

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        assert isinstance(trainer.logger, TrackingLogger)
        config_text = recorded_text(self.parser, self.config)
        record_run(trainer.logger, config_text, self.config.as_dict(), pl_module, trainer.datamodule, stage)


def recorded_text(parser: Any, config: Any) -> str:
    """The resolved config as ``config.yaml`` records it, with ``tracking.run_id`` null: ``lit-d2l fit --config
    config.yaml`` then reproduces the run in a run of its own instead of writing into this one (``--resume``
    names the run itself). ``config`` was checked when it was parsed, so it is not checked again here."""
    if config.get("tracking") is not None and config.get("tracking.run_id") is not None:
        config = config.clone()
        config["tracking.run_id"] = None
    return parser.dump(config, skip_unset=False, skip_validation=True)


def record_run(
    logger: TrackingLogger, config_text: str, config: dict[str, Any], model: Any, datamodule: Any, stage: str = "fit"
) -> None:
    """What every run records about itself: the config (artifact and params), its seeds, identifying tags and
    its dataset (an MLflow dataset input, used for ``stage``)."""
    logger.log_text(config_text, CONFIG_ARTIFACT)
    if datamodule is not None:
        logger.log_dataset(dataset_of(datamodule), CONTEXTS.get(stage, stage))
    logger.log_hyperparams(config_params(config))
    logger.log_hyperparams({"seeds": random_seeds(model, datamodule)})
    logger.set_tags(run_tags(model, datamodule))
    sample_figure = getattr(datamodule, "sample_figure", None)
    if callable(sample_figure):  # e.g. D2L's grid of labelled Fashion-MNIST images
        logger.log_figure(sample_figure(), SAMPLES_ARTIFACT)


def config_params(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as params, with jsonargparse's ``init_args`` level dropped from the names."""
    params: dict[str, Any] = {}
    for key, value in config.items():
        if key == "config":  # the paths of the config files: recorded by the artifact, not a setting
            continue
        if isinstance(value, dict) and "class_path" in value:
            params[f"{key}.class_path"] = value["class_path"]
            value = value.get("init_args") or {}
        params[key] = config_params(value) if isinstance(value, dict) else value
    return params


def random_seeds(model: L.LightningModule, datamodule: Any) -> dict[str, int | None]:
    """The seed of each of the run's random streams (:mod:`lit_d2l.seeding`), as params ``seeds.<stream>``."""
    seeds: dict[str, int | None] = {"dropout": run_seed()}
    if callable(getattr(model, "initialisation_seed", None)):
        seeds["init"] = model.initialisation_seed()
    if callable(getattr(datamodule, "random_seeds", None)):
        seeds.update(datamodule.random_seeds())
    return seeds


def run_tags(model: L.LightningModule, datamodule: Any) -> dict[str, str]:
    """Tags that identify a run at a glance in the MLflow dashboard."""
    tags = {
        "lit_d2l.version": lit_d2l.__version__,
        "model": type(model).__name__,
        "dataset": type(datamodule).__name__ if datamodule is not None else "none",
    }
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


@functools.cache  # one subprocess per process, not one per run (sweeps and folds make many)
def _git_commit() -> str | None:
    """The commit of the lit-d2l source that ran, when it runs from a git checkout."""
    source_dir = Path(lit_d2l.__file__).parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
