"""Silence third-party messages a user can do nothing about, in every process lit-d2l runs."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

# Lightning has no public switch for these lines (its docs only offer the logger levels, which would hide its
# warnings too), so they are filtered here, by the loggers that emit them, and nowhere else. MLflow's own output is
# quieted through its documented environment variables (below).
#: Lines Lightning prints on every Trainer: adverts, the TPU line, and "Seed set to N" (the seeds are params).
_DROPPED = ("💡 Tip:", "TPU available:", "Seed set to ", "Received SIGTERM")
#: Lines worth reading once per command, not once per fold or arm.
_ONCE = ("GPU available:",)


class _LightningNoise(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = re.sub(r"^\[rank: \d+\] ", "", record.getMessage())  # Lightning's prefix under DDP strategies
        if message.startswith(_DROPPED):
            return False
        once = next((prefix for prefix in _ONCE if message.startswith(prefix)), None)
        if once is None:
            return True
        if once in self.seen:
            return False
        self.seen.add(once)
        return True


_NOISE = _LightningNoise()
# Filters act on records a logger creates itself: these are the loggers the lines come from.
_SOURCES = (
    "lightning.pytorch.trainer.connectors.signal_connector",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)


_CHECKPOINTS = r"lightning\.pytorch\.callbacks\.model_checkpoint"
_FIT_LOOP = r"lightning\.pytorch\.loops\.fit_loop"


def quiet_third_party() -> None:
    """Lightning's adverts, TPU and seed lines, repeated GPU lines, a deprecation inside Lightning itself and two
    warnings that do not apply to lit-d2l's fits; MLflow's progress bar per artifact download."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # A config without seed_everything trains with seed 0, recorded in the run's params like any other seed.
    warnings.filterwarnings("ignore", message="No seed found", module=r"lightning\.fabric\.utilities\.seed")
    # A resumed run saves its checkpoints where it saved them before: the directory is meant to hold them.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty", module=_CHECKPOINTS)
    # Lightning counts log_every_n_steps over the whole fit, not per epoch, so an epoch shorter than the interval
    # still logs every n steps (polynomial.yaml: 10 batches an epoch, a value every 20 steps).
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval", module=_FIT_LOOP)
    for name in _SOURCES:
        logger = logging.getLogger(name)
        if _NOISE not in logger.filters:
            logger.addFilter(_NOISE)


def worker_quiet() -> None:
    """In a process that runs a sweep's units or folds: :func:`quiet_third_party`, Lightning's INFO lines off, and
    no MLflow link to a server's page per run (the command prints its parent run)."""
    quiet_third_party()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def at_warning(*names: str) -> Iterator[None]:
    """The loggers ``names`` at WARNING or above inside the block (their INFO lines off), as they were after it."""
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def lightning_info_off() -> AbstractContextManager[None]:
    """Lightning's INFO lines (model summary, "`Trainer.fit` stopped: ...") off inside the block, for the
    second and later fits of one command; its warnings still show."""
    return at_warning("lightning.pytorch", "lightning.fabric")
