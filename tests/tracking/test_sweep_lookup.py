"""Finding a sweep by id: a wrong id names the sweeps that exist."""

from __future__ import annotations

import re
import time

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.errors import UserError
from lit_d2l.tracking.sweeps import KIND_TAG, SWEEP_TAG, SweepStore


def test_a_wrong_sweep_id_lists_the_newest_sweeps(tracking_uri: str, client: MlflowClient, experiment: str) -> None:
    experiment_id = client.create_experiment(experiment)
    later = int(time.time() * 1000) + 10_000_000  # newer than any other test's sweep in the shared store
    ids = [f"{experiment}-sweep{i}" for i in range(7)]
    for i, sweep_id in enumerate(ids):
        tags = {KIND_TAG: "sweep", SWEEP_TAG: sweep_id}
        client.create_run(experiment_id, start_time=later + i * 1000, tags=tags, run_name=sweep_id)
    client.create_run(experiment_id, start_time=later + 9000, tags={KIND_TAG: "sweep", SWEEP_TAG: ids[6]})  # --fresh
    store = SweepStore(tracking_uri)
    assert store.resolve_parent(ids[3]).data.tags[SWEEP_TAG] == ids[3]
    with pytest.raises(UserError) as error:
        store.resolve_parent("no-such-sweep")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("no sweep 'no-such-sweep' in ")
    newest = ", ".join(reversed(ids[2:]))  # each id once, newest first
    assert re.search(rf"sweeps there \(newest 5 of \d+\): {newest}; give a sweep id or a parent run id$", message)
    assert ids[1] not in message
