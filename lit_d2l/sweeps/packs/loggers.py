"""One Lightning logger for a pack that writes each arm's values to that arm's own MLflow run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from torch import Tensor

from lit_d2l.tracking.logger import TrackingLogger


def arm_prefix(arm: int) -> str:
    """How a packed module names arm ``arm``'s values for :class:`ArmLoggers`: ``arm3/val/loss``."""
    return f"arm{arm}/"


class ArmLoggers(Logger):
    """Routes ``arm<k>/<name>`` to arm k's run as ``<name>``; unprefixed values (Lightning's ``epoch``) go
    to every open arm. An arm closed early (it diverged) receives nothing more."""

    def __init__(self, loggers: Sequence[TrackingLogger]) -> None:
        super().__init__()
        self.arms = list(loggers)
        self.open = [True] * len(self.arms)
        #: How the arms' runs end when Lightning ends them after an exception (set by EndStatusOnException).
        self.end_status: str | None = None
        #: As :attr:`TrackingLogger.keep_open`: a pack tested after its fit ends its arms' runs once tested.
        self.keep_open = False

    @property
    def name(self) -> str | None:
        return self.arms[0].name

    @property
    def version(self) -> str | None:
        return None  # K runs, no single one

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Each arm's run records its own config (see :mod:`lit_d2l.sweeps.packs.fit`); nothing pack-wide."""

    def log_metrics(self, metrics: Mapping[str, float | Tensor], step: int | None = None) -> None:
        routed: list[dict[str, float | Tensor]] = [{} for _ in self.arms]
        shared: dict[str, float | Tensor] = {}
        for key, value in metrics.items():
            arm, _, name = key.partition("/")
            if arm.startswith("arm") and arm[3:].isdigit() and name:
                routed[int(arm[3:])][name] = value
            else:
                shared[key] = value
        for index, logger in enumerate(self.arms):
            if self.open[index] and (routed[index] or shared):
                logger.log_metrics({**routed[index], **shared} if routed[index] else shared, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for index, logger in enumerate(self.arms):
            if self.open[index]:
                logger.set_tags(tags)

    def close(self, index: int, status: str = "FINISHED") -> None:
        """End arm ``index``'s run now with MLflow's ``status`` (e.g. it diverged: FINISHED); the others go on."""
        if self.open[index]:
            self.open[index] = False
            self.arms[index].end(status)

    def save(self) -> None:
        for index, logger in enumerate(self.arms):
            if self.open[index]:
                logger.save()

    def flush(self) -> None:
        for index, logger in enumerate(self.arms):
            if self.open[index]:
                logger.flush()

    def finalize(self, status: str) -> None:
        """Lightning's end of the pack: as :meth:`TrackingLogger.finalize`, for every open arm."""
        if status in ("success", "finished") and self.keep_open:
            self.flush()
        else:
            self.end("FINISHED" if status in ("success", "finished") else self.end_status or "FAILED")

    def end(self, status: str) -> None:
        """End every open arm's run with MLflow's ``status``; one failing write does not leave the others RUNNING."""
        errors: list[BaseException] = []
        for index in range(len(self.arms)):
            try:
                self.close(index, status)
            except Exception as exc:  # every run must be ended, whatever the others do
                errors.append(exc)
        if errors:
            raise errors[0]
