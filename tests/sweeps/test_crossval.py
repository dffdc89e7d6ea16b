"""`lit-d2l cv`: K fits as child runs of one parent run, with mean and std on the parent."""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient

from lit_d2l.errors import ConfigError
from lit_d2l.sweeps.crossval import cross_validate
from tests.conftest import LINEAR_CONFIG
from tests.test_cli import QUIET


@pytest.mark.slow  # the fast suite has the same structure with 3 folds through the CLI, below
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


def test_more_folds_than_examples_is_refused_before_anything_is_recorded(tracking_uri, client, experiment) -> None:
    """As ``fit --data.num_folds`` refuses it (cv recorded a parent and a FAILED fold 0 at every try)."""
    from lit_d2l.errors import UserError

    digits = str(LINEAR_CONFIG.parent / "digits_mlp.yaml")
    args = ["--config", digits, "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    with pytest.raises(UserError, match=r"^data.num_folds \(2000\) cannot exceed the 1437 examples"):
        cross_validate(args, num_folds=2000)
    assert client.get_experiment_by_name(experiment) is None


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_info() -> Iterator[Records]:
    """Lightning's INFO records (the suite sets it to WARNING), collected."""
    logger, records = logging.getLogger("lightning.pytorch"), Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    yield records
    logger.removeHandler(records)
    logger.setLevel(level)


@pytest.mark.slow
def test_cv_command_prints_progress_per_fold_the_summary_and_one_model_summary(
    tracking_uri: str, client: MlflowClient, experiment: str, capsys, lightning_info: Records
) -> None:
    from lit_d2l.cli.main import main

    argv = ["cv", "--folds", "3", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri]
    argv += ["--tracking.experiment", experiment, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    folds = [line for line in out.splitlines() if line.startswith("fold ")]
    assert len(folds) == 3
    for k, line in enumerate(folds):
        pattern = rf"fold {k + 1}/3 \(data.fold {k}\): finished val/loss = \S+ \(run [0-9a-f]{{32}}\) "
        assert re.fullmatch(pattern + r"\(elapsed \d+:\d\d, ETA \d+:\d\d\)", line), line
    assert "val/loss:" in out and "over 3 folds" in out
    parent = re.search(
        r"3 folds in \d+:\d\d: 3 finished, 0 diverged, 0 failed, 0 skipped; MLflow parent run (\w+)", out
    )
    assert parent and f"view it with: lit-d2l ui --tracking-uri {tracking_uri}" in out
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.group(1)]
    assert len(runs) == 4 and len(children) == 3 and all(child.info.status == "FINISHED" for child in children)
    assert sorted((c.data.tags["fold"], c.data.params["data.fold"]) for c in children) == [
        ("0", "0"),
        ("1", "1"),
        ("2", "2"),
    ]
    losses = [child.data.metrics["val/loss"] for child in children]
    summary = client.get_run(parent.group(1)).data.metrics
    assert summary["val/loss_mean"] == pytest.approx(statistics.fmean(losses))
    assert summary["val/loss_std"] == pytest.approx(statistics.pstdev(losses)) and summary["val/loss_std"] > 0
    summaries = [message for message in lightning_info.messages if "Total params" in message]
    assert len(summaries) == 1, "Lightning's model summary once per cv, not once per fold"
    assert logging.getLogger("lightning.pytorch").level == logging.INFO, "the level is restored"


def test_cv_help_is_cvs_own(capsys) -> None:
    from tests.test_cli import run_main

    code, out, _ = run_main(["cv", "--help"], capsys)
    assert code == 0 and out.startswith("usage: lit-d2l cv") and "--folds K" in out and "lit-d2l fit --help" in out
