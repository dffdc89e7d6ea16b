"""A command's last message (an interrupt, a full disk, bad input) starts on its own line, not after a progress bar."""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest

from lit_d2l.processes.terminal import LineEnds, own_line
from tests.conftest import LINEAR_CONFIG, REPO
from tests.test_resilience import ENV, training, wait_for


def test_an_open_progress_bar_line_is_ended_before_the_last_message() -> None:
    out = io.StringIO()
    stream = LineEnds(out)
    stream.write("arm 1/4 l2=0: finished\n")
    own_line(stream)
    assert out.getvalue() == "arm 1/4 l2=0: finished\n"  # a complete line gets no blank line after it
    stream.write("\rEpoch 3:  50%|█████     | 2/4 [00:00<00:00]")
    own_line(stream)
    assert out.getvalue().endswith("2/4 [00:00<00:00]\n")


@pytest.mark.slow
def test_an_interrupted_fit_prints_its_line_apart_from_the_progress_bar(tracking_uri, client, experiment) -> None:
    args = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    fit = subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", *args, "--trainer.max_epochs", "3000"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, as a terminal shows them
        text=True,
    )
    wait_for(lambda: training(client, experiment), "training steps stored", process=fit)
    fit.send_signal(signal.SIGTERM)
    out, _ = fit.communicate(timeout=60)
    assert "Epoch" in out  # the progress bar was drawn
    lines = [line.split("\r")[-1] for line in out.split("\n")]
    assert any(line.startswith("lit-d2l: interrupted by SIGTERM") for line in lines), out[-2000:]
    assert all(line.startswith("lit-d2l:") for line in out.split("\n") if "lit-d2l: interrupted" in line), out[-2000:]
