"""Two processes writing the same dataset input or the same tag at the same instant both succeed.

MLflow's SQL store looks a row up, then inserts it: without :mod:`lit_d2l.tracking.races`, most of these
simultaneous writes failed on a UNIQUE constraint (35 of 40 rounds of dataset inputs in one try).
"""

from __future__ import annotations

import multiprocessing

import pytest
from mlflow.entities import Dataset, DatasetInput
from mlflow.tracking import MlflowClient

from lit_d2l.tracking.races import log_inputs, set_tags

ROUNDS = 25


def _write_at_once(uri: str, experiment_id: str, shared_run: str, barrier, failures) -> None:
    """Each round, after the other process is ready: one new dataset into this process's own run, then
    one new tag on the run both processes share."""
    client = MlflowClient(uri)
    own_run = client.create_run(experiment_id).info.run_id
    pid = str(multiprocessing.current_process().pid)
    for round_ in range(ROUNDS):
        dataset = DatasetInput(Dataset(name="digits", digest=f"d{round_}", source_type="code", source="{}"))
        writes = [(log_inputs, own_run, [dataset]), (set_tags, shared_run, {f"claim.{round_}": pid})]
        for write, run_id, what in writes:
            barrier.wait(timeout=60)
            try:
                write(client, run_id, what)
            except Exception as exc:  # counted: the test says how many failed and why
                failures.put(f"round {round_}: {type(exc).__name__}: {str(exc)[:200]}")


@pytest.mark.slow
def test_two_processes_writing_one_dataset_and_one_tag_at_once_both_succeed(tracking_uri, client, experiment):
    experiment_id = client.create_experiment(experiment)
    shared_run = client.create_run(experiment_id).info.run_id
    context = multiprocessing.get_context("spawn")
    barrier, failures = context.Barrier(2), context.Queue()
    writers = [
        context.Process(target=_write_at_once, args=(tracking_uri, experiment_id, shared_run, barrier, failures))
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=240)
    assert [writer.exitcode for writer in writers] == [0, 0]
    failed = []
    while not failures.empty():
        failed.append(failures.get())
    assert failed == []
    runs = client.search_runs([experiment_id])
    stored = {d.dataset.digest for run in runs for d in run.inputs.dataset_inputs}
    assert stored == {f"d{round_}" for round_ in range(ROUNDS)}
    assert {f"claim.{round_}" for round_ in range(ROUNDS)} <= set(client.get_run(shared_run).data.tags)
