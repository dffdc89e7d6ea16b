"""Silence third-party messages a user can do nothing about, in every process lit-d2l runs."""

from __future__ import annotations

import os
import warnings


def quiet_third_party() -> None:
    """A deprecation inside Lightning itself, printed on every run; MLflow's progress bar per artifact download."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
