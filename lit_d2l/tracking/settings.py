"""The ``tracking`` section of a run's config."""

from __future__ import annotations

from dataclasses import dataclass, field

from lit_d2l.errors import ConfigError


@dataclass
class TrackingSettings:
    """Where and under which name runs are recorded.

    Args:
        experiment: MLflow experiment name.
        uri: tracking store; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db.
        run_name: MLflow run name; default <config>-<Model>-<MMDD-HHMMSS>-<4 hex>.
        tags: extra run tags.
        run_id: record into this existing run instead of a new one (set by ``--resume`` and sweeps).
        log_model: log the trained model as the run's MLflow model, ``runs:/<run id>/model`` (sweep arms: false).
        register_model: also register that model in the Model Registry under this name (a new version).
        system_metrics: MLflow's system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py) every 10 s
            ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL), as ``system/*``.
        server_timeout_s: seconds a tracking server may be unreachable before a fit stops with a checkpoint
            and a resume line (it trains on meanwhile, its values kept); default $LIT_D2L_SERVER_TIMEOUT_S, else 120.
    """

    experiment: str = "lit-d2l"
    uri: str | None = None
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    log_model: bool = True
    register_model: str | None = None
    system_metrics: bool = False
    server_timeout_s: float | None = None


def check_registered_name(name: str | None, option: str = "tracking.register_model") -> None:
    """A Model Registry name MLflow accepts, checked before anything trains: not blank, no '/' or ':'."""
    if name is None:
        return
    if not name.strip() or any(c in name for c in "/:"):
        raise ConfigError(f"{option} must be a registered model name without '/' or ':', got {name!r}")
