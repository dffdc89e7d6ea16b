"""A sweep past MLflow's 1,000-run search page: every pair is seen, the parent ends FINISHED, a rerun runs nothing."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.cli.main import main
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG
from tests.conftest import LINEAR_CONFIG

SEEDS = 505  # x 2 arms = 1,010 pairs: 10 past MLflow's default page of 1,000 runs

#: Linear regression on 4 examples, one step of one epoch, nothing recorded but the losses: the runs
#: pack into one vectorized fit, so the time goes to MLflow's 1,010 runs.
SPEC = """name: {name}
base: {base}
grid:
  model.lr: [0.03, 0.1]
seeds: {seeds}
metrics: [val/loss]
overrides:
  trainer.max_epochs: 1
  trainer.log_every_n_steps: 1
  data.num_train: 4
  data.num_val: 4
  data.num_test: 4
  data.batch_size: 4
  test_after_fit: false
  log_graph: false
"""


def ablate(spec: Path, tracking_uri: str, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", str(spec), "--tracking-uri", tracking_uri, "--no-report"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err[-3000:]
    return exit_info.value.code, out


@pytest.mark.slow
def test_a_sweep_of_1010_pairs_finishes_and_its_rerun_runs_none_again(tmp_path, tracking_uri, experiment, capsys):
    spec = tmp_path / "large.yaml"
    spec.write_text(SPEC.format(name=experiment, base=LINEAR_CONFIG, seeds=list(range(SEEDS))))
    code, out = ablate(spec, tracking_uri, capsys)
    assert code == 0, out[-3000:]
    assert re.search(r": 1010 arm runs in .*: 1010 finished, 0 diverged, 0 failed, 0 skipped\n", out), out[-3000:]

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'sweep'")
    assert parent.info.status == "FINISHED"  # it was FAILED: its last 10 children were past the first page

    def pairs() -> Counter:
        children = client.search_runs(
            [experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'", max_results=5000
        )
        assert {run.info.status for run in children} == {"FINISHED"}
        return Counter((run.data.tags["arm"], run.data.tags["seed"]) for run in children)

    first = pairs()
    assert len(first) == 2 * SEEDS and set(first.values()) == {1}

    code, out = ablate(spec, tracking_uri, capsys)  # resumes: every pair is done
    assert code == 0, out[-3000:]
    assert "resuming sweep" in out and f"{2 * SEEDS} of {2 * SEEDS} pairs done" in out, out[-3000:]
    assert re.search(r": 0 arm runs in .*; 1010 done before\n", out), out[-3000:]
    assert pairs() == first, "no pair ran again"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
