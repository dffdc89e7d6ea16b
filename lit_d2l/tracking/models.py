"""A fit's trained model as an MLflow logged model of its run (``runs:/<run id>/model``), and the Model Registry.

MLflow 3 keeps a model as its own entity, linked to the run that made it: created with the client, its
files written by the PyTorch flavour, then marked READY. That is what ``mlflow.pytorch.log_model``
does for the active run of MLflow's fluent API; lit-d2l's runs are made by its own client and store,
so the same public steps are taken here. The model is pickled (its class is lit-d2l's): load it
where lit-d2l is installed, with ``mlflow.pytorch.load_model("runs:/<run id>/model")``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning
import torch
import torchmetrics
from mlflow.entities import LoggedModel, LoggedModelOutput
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError

#: The model's name in its run: ``runs:/<run id>/model``.
MODEL_NAME = "model"
#: Given, so that MLflow does not spend seconds inferring them by loading the model in a subprocess.
PIP_REQUIREMENTS = [f"{m.__name__}=={m.__version__.split('+')[0]}" for m in (torch, lightning, torchmetrics)]


def log_model(
    client: MlflowClient, experiment_id: str, run_id: str, model: torch.nn.Module, step: int, params: Mapping[str, str]
) -> LoggedModel:
    """Store ``model`` (on the CPU) as the run's MLflow model :data:`MODEL_NAME`, with the run's ``params``."""
    pytorch_flavour = _pytorch_flavour()  # here: a fifth of a second, for fits that log a model
    logged = client.create_logged_model(
        experiment_id, MODEL_NAME, source_run_id=run_id, params=dict(params), model_type=type(model).__name__
    )
    try:
        with tempfile.TemporaryDirectory() as tmp, _on_cpu(model), _pickle_warning_off():
            path = Path(tmp) / MODEL_NAME
            described = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id)
            pytorch_flavour.save_model(
                model, path, mlflow_model=described, serialization_format="pickle", pip_requirements=PIP_REQUIREMENTS
            )
            client.log_model_artifacts(logged.model_id, str(path))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    return client.finalize_logged_model(logged.model_id, "READY")


def register_model(client: MlflowClient, name: str, logged: LoggedModel, run_id: str) -> ModelVersion:
    """A new version of registered model ``name`` (created if new) holding ``logged``, made by ``run_id``."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # The model's own location, not models:/<id>: MLflow's registry would look that up in the process's global
    # tracking store, which need not be this client's.
    return client.create_model_version(name, logged.artifact_location, run_id=run_id, model_id=logged.model_id)


def register_run_model(client: MlflowClient, run_id: str, name: str) -> str:
    """Register the model run ``run_id`` logged as a version of ``name``, once (a version it has is reused);
    returns ``"<name> version <n>"``."""
    versions = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    if versions:
        return f"{name} version {versions[0].version}"
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise UserError(
            f"run {run_id} logged no model (it ran with tracking.log_model false, or before lit-d2l logged models): "
            "nothing to register"
        )
    version = register_model(client, name, client.get_logged_model(outputs[-1].model_id), run_id)
    return f"{name} version {version.version}"


def _pytorch_flavour() -> Any:
    """``mlflow.pytorch``, without the ``logging.basicConfig`` its Lightning-autologging module runs on import: that
    handler on the root logger printed every later Lightning line a second time, unformatted and unfiltered."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import mlflow.pytorch

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    return mlflow.pytorch


@contextmanager
def _on_cpu(model: torch.nn.Module) -> Iterator[None]:
    """Saved from the CPU, so a machine without the training GPU loads it; moved back after."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if device.type != "cpu":
        model.cpu()
    try:
        yield
    finally:
        if device.type != "cpu":
            model.to(device)


class _SkipPickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in record.getMessage()


@contextmanager
def _pickle_warning_off() -> Iterator[None]:
    """MLflow warns on every pickled model; lit-d2l pickles its own classes on purpose (a traced graph
    would need an example input per model and drop the module's methods)."""
    logger, skip = logging.getLogger("mlflow.pytorch"), _SkipPickleWarning()
    logger.addFilter(skip)
    try:
        yield
    finally:
        logger.removeFilter(skip)
