"""The store check never breaks SQLite's locks in a process that has the database open.

On Linux, closing any descriptor of a file drops every POSIX lock the process holds on it (SQLite's
"closing a file releases all locks" hazard), so a check that opens and closes ``mlflow.db`` beside
the process's own MLflow connections lets another process write over a transaction in flight: the
store ends up "malformed". Here three processes write and read one store from two threads each while
their main thread checks the store over and over; no operation may fail and the file must stay sound.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.tracking import check_store
from tests.conftest import REPO

# One process of the stress: a writer and a reader thread on one run, the main thread checking the store.
WORKER = """
import json, sys, threading, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from lit_d2l.tracking import check_store

uri, experiment_id, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = MlflowClient(uri)
run_id = client.create_run(experiment_id).info.run_id
errors, operations = [], [0]
deadline = time.monotonic() + seconds

def writer():
    step = 0
    while time.monotonic() < deadline:
        try:
            client.log_batch(run_id, metrics=[Metric("loss", float(step), int(time.time() * 1000), step)])
            client.set_tag(run_id, "step", str(step))
            operations[0] += 1
        except Exception as exc:
            errors.append(f"write: {exc}"[:200])
        step += 1

def reader():
    while time.monotonic() < deadline:
        try:
            client.get_run(run_id)
            client.search_runs([experiment_id], max_results=5)
            operations[0] += 1
        except Exception as exc:
            errors.append(f"read: {exc}"[:200])

threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
for thread in threads:
    thread.start()
checks = 0
while time.monotonic() < deadline:
    check_store(uri)
    checks += 1
for thread in threads:
    thread.join()
print(json.dumps({"errors": errors[:5], "error_count": len(errors), "operations": operations[0], "checks": checks}))
"""


@pytest.mark.slow
def test_checks_beside_open_connections_never_corrupt_the_store(tracking_uri: str, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(Path(tracking_uri.removeprefix("sqlite:///")).read_bytes())  # a new store with its schema
    uri = f"sqlite:///{db}"
    experiment_id = MlflowClient(uri).create_experiment("locks")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, uri, experiment_id, "20"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["checks"] > 100 and r["operations"] > 50 for r in results), results  # the stress really ran
    assert [r["error_count"] for r in results] == [0, 0, 0], [r["errors"] for r in results]
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_check_beside_an_open_connection_opens_no_descriptor_of_the_database(tracking_uri: str) -> None:
    """The hazard itself: once this process has the database open, a check opens (so closes) none of its files."""
    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    MlflowClient(tracking_uri).search_experiments(max_results=1)  # this process's MLflow holds the file open
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event in ("open", "sqlite3.connect") and args and str(args[0]).startswith((str(db), db.as_uri())):
            opened.append(f"{event} {args[0]}")

    sys.addaudithook(audit)  # audit hooks cannot be removed: this one only records into a list
    check_store(tracking_uri)
    assert opened == []
