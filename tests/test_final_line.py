"""A command's last message (an interrupt, a full disk, bad input) starts on its own line, not after a progress bar."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading

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


def _interrupted_fit(tracking_uri: str, client, experiment: str, terminal: bool) -> str:
    """The output of a long fit stopped by SIGTERM once it trains: stdout and stderr in one stream, as a terminal
    shows them (``terminal``: a pseudo-terminal, else a pipe)."""
    args = ["fit", "--config", str(LINEAR_CONFIG), "--tracking.uri", tracking_uri, "--tracking.experiment", experiment]
    reader, writer = pty.openpty() if terminal else os.pipe()
    if terminal:  # a terminal 120 columns wide: tqdm draws nothing on one of 0 columns, a new pty's size
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    fit = subprocess.Popen(
        [sys.executable, "-m", "lit_d2l", *args, "--trainer.max_epochs", "3000"],
        cwd=REPO,
        env=ENV,
        stdout=writer,
        stderr=writer,
    )
    os.close(writer)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(reader, 1 << 16)
            except OSError:  # a pseudo-terminal whose other end closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        wait_for(lambda: training(client, experiment), "training steps stored", process=fit)
        fit.send_signal(signal.SIGTERM)
        fit.wait(timeout=60)
        thread.join(timeout=10)
    finally:
        if fit.poll() is None:
            fit.kill()
        os.close(reader)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")  # a terminal ends its lines in CRLF


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_an_interrupted_fit_prints_its_line_apart_from_the_progress_bar(
    terminal: bool, tracking_uri, client, experiment
) -> None:
    out = _interrupted_fit(tracking_uri, client, experiment, terminal)
    # On a terminal the progress bar is drawn; into a pipe or a file its redraws would fill it, so none are.
    assert ("Epoch" in out) == terminal and ("\r" in out) == terminal, out[-2000:]
    lines = [line.split("\r")[-1] for line in out.split("\n")]
    assert any(line.startswith("lit-d2l: interrupted by SIGTERM") for line in lines), out[-2000:]
    assert all(line.startswith("lit-d2l:") for line in out.split("\n") if "lit-d2l: interrupted" in line), out[-2000:]
