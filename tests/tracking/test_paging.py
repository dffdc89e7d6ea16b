"""Every page of a search is read: a sweep's children, stale runs, sweeps and experiments past one page."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.tracking.liveness import HEARTBEAT_TAG, OWNER_TAG, Owner, close_stale_runs
from lit_d2l.tracking.runs import list_runs
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG, SWEEP_TAG, SweepStore

PAGE = 7


def at_most(page: int, search: Callable) -> Callable:
    """``search`` answering at most ``page`` results a request: MLflow's own page token marks the rest."""
    signature = inspect.signature(search)

    def short(*args, **kwargs):
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        call.arguments["max_results"] = min(call.arguments["max_results"] or page, page)
        return search(*call.args, **call.kwargs)

    return short


@pytest.fixture
def short_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 7 runs or experiments, so a few dozen runs cross several page boundaries."""
    monkeypatch.setattr(MlflowClient, "search_runs", at_most(PAGE, MlflowClient.search_runs))
    monkeypatch.setattr(MlflowClient, "search_experiments", at_most(PAGE, MlflowClient.search_experiments))


def make_sweep(client: MlflowClient, experiment: str, finished: int, stale: int) -> tuple[str, str, str]:
    """A sweep parent with ``finished`` FINISHED children and ``stale`` RUNNING ones whose owner is gone:
    (experiment id, sweep id, parent run id)."""
    experiment_id = client.create_experiment(experiment)
    sweep_id = f"{experiment}-sweep"
    parent = client.create_run(experiment_id, tags={KIND_TAG: "sweep", SWEEP_TAG: sweep_id}).info.run_id
    client.set_terminated(parent, "FINISHED")
    gone = {OWNER_TAG: str(Owner("a-node-long-gone", 1, "1")), HEARTBEAT_TAG: "1000"}
    for seed in range(finished + stale):
        tags = {PARENT_TAG: parent, SWEEP_TAG: sweep_id, "arm": "base", "seed": str(seed)}
        run = client.create_run(experiment_id, tags={**tags, **(gone if seed >= finished else {})}).info.run_id
        if seed < finished:
            client.set_terminated(run, "FINISHED")
    return experiment_id, sweep_id, parent


def test_a_sweep_past_one_page_is_read_whole(tracking_uri, client, experiment, short_pages) -> None:
    experiment_id, _, parent = make_sweep(client, experiment, finished=20, stale=0)
    store = SweepStore(tracking_uri)
    children = store.children_of(parent, experiment_id)
    assert sorted(c.seed for c in children) == list(range(20))
    for seed in (0, 19):  # the oldest child and the newest: each is FINISHED, whatever page it is on
        run_id, why = store.claim_pair(parent, experiment_id, f"seed={seed}", {"arm": "base", "seed": str(seed)})
        assert run_id is None and why.startswith("already FINISHED in run"), why
    assert len(store.children_of(parent, experiment_id)) == 20, "no pair was claimed twice"


def test_every_stale_run_past_one_page_is_closed(client, experiment, short_pages) -> None:
    experiment_id, _, _ = make_sweep(client, experiment, finished=0, stale=17)
    closed = close_stale_runs(client, [experiment_id])
    assert len(closed) == 17
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    assert not running


def test_a_sweep_in_an_experiment_past_one_page_is_found(tracking_uri, client, experiment, short_pages) -> None:
    _, sweep_id, parent = make_sweep(client, experiment, finished=1, stale=0)
    for i in range(PAGE + 1):  # newer experiments come first: the sweep's is on a later page
        client.create_experiment(f"{experiment}-later-{i}")
    assert SweepStore(tracking_uri).resolve_parent(sweep_id).info.run_id == parent


def test_runs_lists_as_many_runs_as_asked(tracking_uri, client, experiment, short_pages) -> None:
    make_sweep(client, experiment, finished=20, stale=0)
    assert len(list_runs(tracking_uri, experiment=experiment, limit=15)) == 15
    everything = list_runs(tracking_uri, experiment=experiment, limit=1000)
    assert len(everything) == 21 and len({run.run_id for run in everything}) == 21
    assert [run.start_time for run in everything] == sorted((run.start_time for run in everything), reverse=True)


def test_runs_past_mlflows_largest_page_is_no_error(tracking_uri, client, experiment) -> None:
    """``lit-d2l runs --limit 60000`` asked MLflow for one page of 60,000: an MlflowException traceback."""
    make_sweep(client, experiment, finished=2, stale=0)
    assert len(list_runs(tracking_uri, experiment=experiment, limit=60_000)) == 3


@pytest.mark.slow
def test_a_sweep_of_1010_children_is_read_whole_at_mlflows_own_page_size(tracking_uri, client, experiment) -> None:
    """MLflow's default page is 1,000 runs: a 1,010-pair sweep's last 10 children were invisible."""
    experiment_id, _, parent = make_sweep(client, experiment, finished=1010, stale=0)
    store = SweepStore(tracking_uri)
    assert len({c.seed for c in store.children_of(parent, experiment_id)}) == 1010
    run_id, why = store.claim_pair(parent, experiment_id, "seed=1009", {"arm": "base", "seed": "1009"})
    assert run_id is None and why.startswith("already FINISHED"), why
