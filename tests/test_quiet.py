"""A quiet CLI: no third-party adverts, no seed lines, one device line per command."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from lightning.fabric.utilities.seed import seed_everything

from lit_d2l.processes.quiet import quiet_third_party
from tests.conftest import LINEAR_CONFIG

NOISE = ("Tip:", "litlogger", "TPU available", "Seed set to")


def test_seed_lines_are_dropped_and_other_lightning_lines_kept(caplog) -> None:
    quiet_third_party()
    with caplog.at_level(logging.INFO):
        seed_everything(3)
        logging.getLogger("lightning.fabric.utilities.seed").info("a line worth reading")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("lightning")] == ["a line worth reading"]


@pytest.mark.slow
def test_a_cv_of_three_fits_prints_no_adverts_or_seed_lines_and_one_device_line(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "lit_d2l", "cv", "--folds", "3", "--config", str(LINEAR_CONFIG)]
    command += ["--tracking.uri", uri, "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert [line for line in output.splitlines() if any(noise in line for noise in NOISE)] == []
    assert output.count("GPU available:") == 1, output
    assert output.count("fold ") >= 3 and "over 3 folds" in output


def test_lightnings_sigterm_line_is_dropped_with_its_rank_prefix(caplog) -> None:
    quiet_third_party()
    logger = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
    with caplog.at_level(logging.INFO):
        logger.info("[rank: 0] Received SIGTERM: 15")
        logger.info("Received SIGTERM: 15")
    assert [r for r in caplog.records if "SIGTERM" in r.getMessage()] == []
