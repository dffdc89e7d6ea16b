"""A line now and then from a long fit: a sweep whose packs train for minutes is not silent, and a fit whose
output goes to a file (a SLURM log, ``> out.txt``) gets these lines instead of a progress bar's redraws."""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L

from lit_d2l.processes.terminal import clock_time

#: Seconds between two heartbeat lines.
EVERY_S = 30.0


class Heartbeat(L.Callback):
    """At an epoch's end, at most every ``every_s`` seconds: ``pack 2/5 (12 arms): epoch 40/400, elapsed 1:10``,
    followed by the latest value of each metric in ``show`` that the fit has logged (``train/loss = 0.0312``)."""

    def __init__(
        self,
        label: str,
        every_s: float = EVERY_S,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        show: tuple[str, ...] = (),
    ) -> None:
        self.label, self.every_s, self.clock, self.show = label, every_s, clock, show
        self.echo = echo or _say  # a module's function, not a lambda: ddp_spawn pickles the callbacks
        self.start = self.last = clock()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.last = self.clock()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = self.clock()
        if now - self.last < self.every_s or not trainer.is_global_zero:
            return
        self.last = now
        epochs = trainer.max_epochs
        of = f"/{epochs}" if epochs is not None and epochs > 0 else ""
        values = [(key, trainer.callback_metrics.get(key)) for key in self.show]
        shown = "".join(f", {key} = {float(v):.4g}" for key, v in values if v is not None and v.numel() == 1)
        self.echo(f"{self.label}: epoch {trainer.current_epoch + 1}{of}, elapsed {clock_time(now - self.start)}{shown}")


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe (a worker process's stdout) or a log file
