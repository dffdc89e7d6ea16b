"""A packed sweep killed mid-fit resumes: every arm × seed ends FINISHED exactly once."""

from __future__ import annotations

import signal

import pytest

from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.spec import load_spec
from tests.sweeps.test_sweep import children_by_pair, spec_file
from tests.test_resilience import lit_d2l, running_runs, wait_for


@pytest.mark.slow
def test_a_sigkilled_packed_sweep_resumes_with_every_pair_finished_once(tmp_path, tracking_uri, client, experiment):
    body = "grid: {model.l2: [0.0, 0.1, 3.0]}\nseeds: [0, 1]\noverrides: {trainer.max_epochs: 300}\n"
    path = spec_file(tmp_path, experiment, body)
    sweep = lit_d2l("ablate", str(path), "--tracking-uri", tracking_uri, "--no-report")
    # One pack of six: every child run is claimed and RUNNING before the pack trains.
    wait_for(lambda: len(running_runs(client, experiment)) >= 7, "the pack training", process=sweep)
    sweep.send_signal(signal.SIGKILL)
    sweep.communicate(timeout=30)
    assert len(running_runs(client, experiment)) == 7  # nobody could close them

    spec = load_spec(path)
    result = run_sweep(spec, tracking_uri=tracking_uri, echo=lambda _: None)
    pairs = children_by_pair(tracking_uri, result.parent_run_id)
    assert set(pairs) == {(arm.key, seed) for arm, seed in spec.pairs()}
    for pair, statuses in pairs.items():
        assert statuses.count("FINISHED") == 1 and "RUNNING" not in statuses, (pair, statuses)
        assert set(statuses) <= {"FINISHED", "KILLED"}
    assert sorted(o.outcome for o in result.outcomes) == ["finished"] * 6
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
