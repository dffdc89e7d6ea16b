"""Dropout on the UCI digits (D2L 5.6): a reduced ``experiments/ablations/dropout_digits.yaml``."""

from __future__ import annotations

import statistics

import pytest
import torch
import yaml

from lit_d2l.fit.run import run_configured
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.sweeps import SweepStore
from tests.conftest import REPO

SUITE = REPO / "experiments" / "ablations" / "dropout_digits.yaml"


@pytest.fixture
def one_thread():
    """A 64-512-512-10 MLP on batches of 16 runs faster on one thread than on two that share a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_dropout_narrows_the_train_val_gap_on_average_over_seeds(tmp_path, tracking_uri, experiment, one_thread):
    spec = yaml.safe_load(SUITE.read_text())
    spec |= {"name": experiment, "base": str(SUITE.parent / spec["base"]), "seeds": [0, 1, 2]}
    spec["grid"] = {"model.dropout": [0.0, 0.5]}
    epochs = spec["overrides"]["trainer.max_epochs"]
    spec["overrides"] |= {"trainer.check_val_every_n_epoch": epochs, "log_graph": False}  # validate once, at the end
    path = tmp_path / "dropout.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_sweep(load_spec(path), tracking_uri=tracking_uri, echo=lambda _: None)
    store = SweepStore(tracking_uri)
    children = store.children(store.client.get_run(result.parent_run_id))

    def mean_gap(arm: str) -> float:
        runs = [c for c in children if c.arm == arm]
        assert len(runs) == 3 and all(c.metrics["train/acc"] == 1.0 for c in runs), "every arm fits its 100 images"
        return statistics.fmean(c.metrics["train/acc"] - c.metrics["val/acc"] for c in runs)

    assert mean_gap("model.dropout=0.5") < mean_gap("model.dropout=0.0")


@pytest.mark.slow
def test_a_digits_mlp_without_dropout_reaches_95_percent(tracking_uri, experiment, one_thread) -> None:
    args = ["--config", str(REPO / "experiments" / "digits_mlp.yaml"), "--trainer.max_epochs", "10"]
    args += ["--tracking.uri", tracking_uri, "--tracking.experiment", experiment, "--test_after_fit", "false"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    result = run_configured("fit", args)
    assert result is not None
    assert result.metrics["val/acc"] >= 0.95
    assert result.metrics["train/acc"] >= result.metrics["val/acc"]
