"""`lit-d2l cv`: K fits as child runs of one parent run, with mean and std on the parent."""

from __future__ import annotations

import statistics

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.crossval import cross_validate
from lit_d2l.errors import ConfigError
from tests.conftest import LINEAR_CONFIG
from tests.test_cli import QUIET


def test_five_folds_are_finished_children_of_a_parent_with_mean_and_std(
    tracking_uri: str, client: MlflowClient, experiment: str
) -> None:
    args = ["--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    result = cross_validate([*args, *QUIET, "--trainer.max_epochs", "1"], num_folds=5)

    exp = client.get_experiment_by_name(experiment)
    runs = {run.info.run_id: run for run in client.search_runs([exp.experiment_id])}
    assert len(runs) == 6
    parent = runs[result.parent_run_id]
    children = [run for run in runs.values() if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 5
    assert all(child.info.status == "FINISHED" for child in children)
    assert sorted(child.data.tags["fold"] for child in children) == ["0", "1", "2", "3", "4"]
    assert sorted(child.data.params["data.fold"] for child in children) == ["0", "1", "2", "3", "4"]
    assert parent.info.status == "FINISHED"

    fold_losses = [child.data.metrics["val/loss"] for child in children]
    assert parent.data.metrics["val/loss_mean"] == pytest.approx(statistics.fmean(fold_losses))
    assert parent.data.metrics["val/loss_std"] == pytest.approx(statistics.pstdev(fold_losses))
    assert parent.data.metrics["val/loss_std"] > 0, "different folds validate on different data"


def test_fewer_than_two_folds_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        cross_validate(["--config", str(LINEAR_CONFIG)], num_folds=1)


def test_cv_command_prints_each_fold_and_the_summary(tracking_uri: str, experiment: str, capsys) -> None:
    from lit_d2l.cli import main

    argv = ["cv", "--folds", "3", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, *QUIET, "--trainer.max_epochs", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("fold ")] == [
        "fold 0",
        "fold 1",
        "fold 2",
    ]
    assert "val/loss:" in out and "over 3 folds" in out and "MLflow parent run" in out
