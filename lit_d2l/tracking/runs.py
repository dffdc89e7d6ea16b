"""Single runs read back from the store: for ``--resume`` and for ``lit-d2l runs``."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MLflow is imported where used: `lit-d2l runs --help` answers without it
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.tracking.liveness import OWNER_TAG, STALE_TAG, close_stale_once, close_stale_runs, stale_reason
from lit_d2l.tracking.paging import all_experiments, all_runs
from lit_d2l.tracking.store import check_store, resolve_tracking_uri, sqlite_path, store_writable


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

    @property
    def started(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_time / 1000))


def open_store(uri: str, write: bool = True) -> MlflowClient:
    """A client on a checked store, after closing the runs whose process is gone (``write``: the store must be
    writable; else a read-only store is read as it is)."""
    from mlflow.tracking import MlflowClient

    check_store(uri, write=write)
    if write:
        close_stale_once(uri)
    return MlflowClient(uri)


def stored_run(uri: str, run_id: str) -> StoredRun:
    """The run ``run_id`` in the store at ``uri``; one clear error if there is none."""
    from mlflow.exceptions import MlflowException

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
    runs = all_runs(
        client,
        list(names),
        f"tags.`{STALE_TAG}` LIKE '%'" if stale_only else "",
        ["attributes.start_time DESC"],
        limit=limit,
    )
    return [_stored(client, run, names) for run in runs]


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
    )


def owner_of(run: StoredRun) -> str:
    return run.tags.get(OWNER_TAG, "")


def runs_command(argv: list[str]) -> int:
    """``lit-d2l runs [--stale] [--experiment NAME] [--limit N]``: the newest runs and their status."""
    parser = argparse.ArgumentParser(prog="lit-d2l runs", description="List recorded runs, newest first.")
    parser.add_argument("--stale", action="store_true", help="only runs closed because their process was gone")
    parser.add_argument("--experiment", default=None, help="only this experiment")
    parser.add_argument("--limit", type=int, default=30, help="how many runs (default 30)")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db"
    )
    args = parser.parse_args(argv)
    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print(f"no runs in {uri}")  # and no store made to say so
        return 0
    if store_writable(uri):  # a read-only store is listed as it is
        from mlflow.tracking import MlflowClient

        close_stale_runs(MlflowClient(uri))  # now, even if this process closed some before
    runs = list_runs(uri, experiment=args.experiment, stale_only=args.stale, limit=args.limit)
    if not runs:
        print("no runs closed as stale" if args.stale else f"no runs in {uri}")
        return 0
    for run in runs:
        line = f"{run.run_id}  {run.status:<8}  {run.started}  {run.experiment}/{run.name}"
        if args.stale:
            line += f"\n    {run.tags.get(STALE_TAG, '')}"
        print(line)
    return 0
