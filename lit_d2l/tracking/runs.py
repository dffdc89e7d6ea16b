"""Single runs read back from the store: for ``--resume``, for ``lit-d2l runs`` and for the dashboard's links."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MLflow is imported where used: `lit-d2l runs --help` answers without it
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.tracking.liveness import KIND_TAG, PARENT_TAG, STALE_TAG, close_stale_in, stale_reason
from lit_d2l.tracking.paging import all_experiments, all_runs
from lit_d2l.tracking.store import check_store, holds_nothing, sqlite_path


@dataclass
class StoredRun:
    """What lit-d2l needs to know about one recorded run."""

    run_id: str
    experiment: str
    name: str
    status: str
    start_time: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    stale: str | None = None  # why a RUNNING run's process is gone
    metrics: dict[str, float] = field(default_factory=dict)  # each metric's last value

    @property
    def started(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_time / 1000))


def open_store(uri: str, write: bool = True) -> MlflowClient:
    """A client on a checked store, after closing the runs whose process is gone (``write``: the store must be
    writable; else a read-only store is read as it is)."""
    from mlflow.tracking import MlflowClient

    check_store(uri, write=write)
    if write:
        close_stale_in(uri)
    return MlflowClient(uri)


def stored_run(uri: str, run_id: str) -> StoredRun:
    """The run ``run_id`` in the store at ``uri``; one clear error if there is none."""
    from mlflow.exceptions import MlflowException

    db = sqlite_path(uri)
    if db is not None and holds_nothing(db):  # said without making a store
        raise UserError(f"no run {run_id!r} in {uri}: it holds no runs yet; give the store the run was recorded in")
    client = open_store(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id!r} in {uri}: give a run id printed by lit-d2l (see lit-d2l runs)") from None
    return _stored(client, run, {})


def config_of(uri: str, run_id: str, artifact: str) -> Path | None:
    """Download one artifact file of a run (e.g. its config.yaml); None if it has none."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return Path(MlflowClient(uri).download_artifacts(run_id, artifact, tempfile.mkdtemp(prefix="lit-d2l-")))
    except (MlflowException, OSError):
        return None


def list_runs(uri: str, experiment: str | None = None, stale_only: bool = False, limit: int = 50) -> list[StoredRun]:
    """Newest runs first; ``stale_only`` keeps the runs lit-d2l closed because their process was gone."""
    client = open_store(uri, write=False)
    experiments = all_experiments(client)
    if experiment is not None:
        experiments = [e for e in experiments if e.name == experiment]
        if not experiments:
            raise UserError(f"no experiment {experiment!r} in {uri}")
    if not experiments:
        return []
    names = {e.experiment_id: e.name for e in experiments}
    where = f"tags.`{STALE_TAG}` LIKE '%'" if stale_only else ""
    runs = all_runs(client, list(names), where, ["attributes.start_time DESC"], limit=limit)
    return [_stored(client, run, names) for run in runs]


def missing_parents(uri: str, runs: list[StoredRun]) -> list[StoredRun]:
    """The parent runs of ``runs`` that are not among them (a sweep's, of an arm listed without it)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    listed = {run.run_id for run in runs}
    parents = []
    for run_id in sorted({run.tags[PARENT_TAG] for run in runs if PARENT_TAG in run.tags} - listed):
        try:
            parents.append(_stored(client, client.get_run(run_id), {}))
        except MlflowException:  # deleted
            continue
    return parents


def _stored(client: MlflowClient, run: Run, names: dict[str, str]) -> StoredRun:
    experiment = names.get(run.info.experiment_id) or client.get_experiment(run.info.experiment_id).name
    return StoredRun(
        run_id=run.info.run_id,
        experiment=experiment,
        name=run.info.run_name or "",
        status=run.info.status,
        start_time=run.info.start_time or 0,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        stale=stale_reason(run) if run.info.status == "RUNNING" else None,
        metrics=dict(run.data.metrics),
    )


def dashboard_links(uri: str, address: str) -> list[str]:
    """Links into the dashboard: the runs of the newest run's experiment, and the newest sweep's report."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    newest = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    if not newest:
        return []
    links = [f"  runs:   {address}/#/experiments/{newest[0].info.experiment_id}/runs"]
    sweeps = client.search_runs(
        experiments, f"tags.`{KIND_TAG}` = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if sweeps and any(a.path == "report/report.html" for a in client.list_artifacts(sweeps[0].info.run_id, "report")):
        sweep = sweeps[0].info
        report = f"#/experiments/{sweep.experiment_id}/runs/{sweep.run_id}/artifactPath/report/report.html"
        links.append(f"  newest sweep's report: {address}/{report}")
    return links
