"""MLflow's own system metrics (``system/cpu_utilization_percentage``, memory, disk, network, and GPU with
nvidia-ml-py), sampled in a thread while a run runs: every 10 s, or $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lit_d2l.errors import ConfigError


def check_system_metrics() -> None:
    """``tracking.system_metrics`` needs psutil (a lit-d2l dependency; missing only from a partial install)."""
    if importlib.util.find_spec("psutil") is None:
        raise ConfigError("tracking.system_metrics needs psutil: pip install psutil, or tracking.system_metrics false")


def start_monitor(tracking_uri: str, run_id: str, resume: bool = False) -> Any:
    """MLflow's ``SystemMetricsMonitor``, sampling into ``run_id`` until its ``finish()``; ``resume`` continues
    the run's system steps."""
    check_system_metrics()
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # imports psutil

    # Its INFO lines (started, stopping, terminated, no GPU) repeat per run what the setting says; warnings stay.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    if torch.cuda.is_available() and importlib.util.find_spec("pynvml") is None:
        rank_zero_warn("tracking.system_metrics records no GPU metrics without nvidia-ml-py: pip install nvidia-ml-py")
    monitor = SystemMetricsMonitor(run_id, resume_logging=resume, tracking_uri=tracking_uri)
    monitor.start()
    return monitor
