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
    ending = "give a sweep id, a spec's name or a parent run id$"
    assert re.search(rf"sweeps there \(newest 5 of \d+\): {newest}; {ending}", message)
    assert ids[1] not in message


def test_a_spec_name_finds_its_one_sweep_and_names_them_when_several(
    tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    """The name a spec gives (its sweep ids are the name and a digest of the spec and base config) finds the sweep
    when only one has it; when the spec changed between sweeps, the error names their ids."""
    experiment_id = client.create_experiment(experiment)
    one, *two = f"{experiment}-one-0a1b2c3d4e", f"{experiment}-two-5f6a7b8c9d", f"{experiment}-two-0e1f2a3b4c"
    longer = f"{experiment}-one-more-1a2b3c4d5e"  # another spec, whose name begins with the first's
    for sweep_id in (one, *two, longer):
        client.create_run(experiment_id, tags={KIND_TAG: "sweep", SWEEP_TAG: sweep_id}, run_name=sweep_id)
    store = SweepStore(tracking_uri)
    assert store.resolve_parent(f"{experiment}-one").data.tags[SWEEP_TAG] == one
    with pytest.raises(UserError) as error:
        store.resolve_parent(f"{experiment}-two")
    assert re.fullmatch(
        rf"2 sweeps in \S+ are named '{experiment}-two' \(the spec or its base config changed between them\), "
        rf"ids: ({two[0]}, {two[1]}|{two[1]}, {two[0]}); give one of them",
        str(error.value),
    )
    with pytest.raises(UserError, match=r"^no sweep "):
        store.resolve_parent(f"{experiment}-on")  # a name is whole: not any prefix of an id
