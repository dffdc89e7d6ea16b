"""--ckpt_path: every bad checkpoint ends in one line, nothing recorded; checkpoints load weights_only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_d2l.cli.main import main
from tests.conftest import linear_fit_args


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of the linear-regression config (w of length 2)."""
    store = tmp_path_factory.mktemp("ckpt-store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *linear_fit_args(uri, "ckpt", "--trainer.enable_checkpointing", "true", "--trainer.max_epochs=1")])
    assert exit_.value.code == 0
    (path,) = (store / "checkpoints").rglob("*.ckpt")
    return path


def _fails_in_one_line(capsys, client, experiment, tracking_uri, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *linear_fit_args(tracking_uri, experiment, *args)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("lit-d2l: error: --ckpt_path "), err
    assert client.get_experiment_by_name(experiment) is None or not client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id]
    ), "bad input must record nothing"
    return err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["fit", "test"])
def test_a_good_checkpoint_resumes_or_evaluates(checkpoint, tracking_uri, client, experiment, command, capsys):
    args = linear_fit_args(tracking_uri, experiment, "--ckpt_path", str(checkpoint), "--trainer.max_epochs", "2")
    with pytest.raises(SystemExit) as exit_:
        main([command, *args])
    assert exit_.value.code == 0, capsys.readouterr().err


@pytest.mark.slow
def test_bad_checkpoints_are_refused_in_one_line(checkpoint, tmp_path, tracking_uri, client, experiment, capsys):
    err = _fails_in_one_line(capsys, client, experiment, tracking_uri, "--ckpt_path", str(tmp_path / "missing.ckpt"))
    assert "no such file" in err
    err = _fails_in_one_line(capsys, client, experiment, tracking_uri, "--ckpt_path", str(tmp_path))
    assert "a folder, not a checkpoint file" in err

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    assert "not a readable checkpoint" in _fails_in_one_line(
        capsys, client, experiment, tracking_uri, "--ckpt_path", str(truncated)
    )

    not_lightning = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, not_lightning)
    assert "not a Lightning checkpoint" in _fails_in_one_line(
        capsys, client, experiment, tracking_uri, "--ckpt_path", str(not_lightning)
    )

    pickled = tmp_path / "code.ckpt"  # an object that only unpickling arbitrary code could restore
    torch.save({"state_dict": {}, "payload": Path("x")}, pickled)
    assert "not a readable checkpoint" in _fails_in_one_line(
        capsys, client, experiment, tracking_uri, "--ckpt_path", str(pickled)
    )

    err = _fails_in_one_line(
        capsys, client, experiment, tracking_uri, "--ckpt_path", str(checkpoint), "--data.w", "[1.0, 2.0, 3.0]"
    )
    assert "does not fit this model" in err


@pytest.mark.parametrize("command", ["test", "validate"])
def test_evaluating_without_weights_is_one_line_and_records_nothing(command, tracking_uri, client, experiment, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, *linear_fit_args(tracking_uri, experiment)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"lit-d2l: error: lit-d2l {command} needs trained weights: give --run RUN_ID")
    assert client.get_experiment_by_name(experiment) is None


@pytest.mark.slow
def test_test_run_evaluates_that_runs_newest_checkpoint_into_the_same_run(tracking_uri, client, experiment, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *linear_fit_args(tracking_uri, experiment, "--trainer.max_epochs=2", "--test_after_fit=false")])
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    assert "test/loss" not in run.data.metrics
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # other data than it trained on: said so, with the way that works
        main(["test", "--run", run.info.run_id, "--tracking.uri", tracking_uri, "--data.num_test", "50"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert err.startswith("lit-d2l: error: a run evaluated with --run keeps its settings: data.num_test was 1000")
    assert "--ckpt_path FILE with --config FILE" in err and client.get_run(run.info.run_id).info.status == "FINISHED"
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--run", run.info.run_id, "--tracking.uri", tracking_uri])
    assert exit_.value.code == 0, capsys.readouterr().err
    again = client.get_run(run.info.run_id)
    assert again.info.status == "FINISHED" and "test/loss" in again.data.metrics
    assert len(client.search_runs([exp.experiment_id])) == 1
