"""Reading sweeps back from MLflow: the parent run, its children, and stale runs to close."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.tracking.store import check_store, resolve_tracking_uri

PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "lit_d2l.sweep_id"
KIND_TAG = "lit_d2l.kind"


@dataclass
class Child:
    """One arm × seed run of a sweep, as recorded."""

    run_id: str
    arm: str
    seed: int
    status: str
    outcome: str
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int = 0  # ms since the epoch, as MLflow records it


class SweepStore:
    """MLflow queries of lit-d2l sweeps."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        check_store(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri)

    def find_parent(self, experiment: str, sweep_id: str) -> str | None:
        """The newest parent run of ``sweep_id`` in ``experiment``, if any."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`{KIND_TAG}` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def resolve_parent(self, sweep: str) -> Run:
        """A parent run given its run id or its sweep id (searched in every experiment)."""
        try:
            run = self.client.get_run(sweep)
            if run.data.tags.get(KIND_TAG) == "sweep":
                return run
        except MlflowException as exc:  # not a run id: try it as a sweep id; any other error is real
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = (
            self.client.search_runs(
                experiments,
                filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{KIND_TAG}` = 'sweep'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if experiments
            else []
        )
        if not runs:
            raise UserError(f"no sweep {sweep!r} in {self.tracking_uri}: give a sweep id or a parent run id")
        return runs[0]

    def children(self, parent: Run) -> list[Child]:
        runs = self.client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
        )
        return [
            Child(
                run_id=run.info.run_id,
                arm=run.data.tags.get("arm", ""),
                seed=int(run.data.tags.get("seed", 0)),
                status=run.info.status,
                outcome=run.data.tags.get("outcome", "finished" if run.info.status == "FINISHED" else "failed"),
                metrics=dict(run.data.metrics),
                tags=dict(run.data.tags),
                start_time=run.info.start_time or 0,
            )
            for run in runs
        ]

    def close_stale(self, children: list[Child]) -> int:
        """Runs left RUNNING by a killed process are KILLED; returns how many."""
        stale = [c for c in children if c.status == "RUNNING"]
        for child in stale:
            self.client.set_terminated(child.run_id, "KILLED")
            child.status = "KILLED"
        return len(stale)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def log_folder(self, run_id: str, folder: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def download(self, run_id: str, path: str) -> Path:
        return Path(self.client.download_artifacts(run_id, path, tempfile.mkdtemp()))
