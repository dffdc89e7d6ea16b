"""``graph.svg`` and ``graph.png`` with a fit's first step: the objective's computation graph (D2L 5.3.2)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from matplotlib.figure import Figure

from lit_d2l.graph import ComputationGraph, graph_figure, save_figure
from lit_d2l.models.base import D2LModule


class ComputationGraphArtifact(L.Callback):
    """Draw the graph of J = L + s from a side pass over the first training batch; log it on the run.

    The side pass (see :mod:`lit_d2l.models.probe`) leaves the fit as it was. With ``out_dir`` the files
    are also written there. A resumed fit (first step > 0) draws nothing: its run has the figure already.
    Only lit-d2l's models (:class:`~lit_d2l.models.D2LModule`) are drawn; they say what L and s are.
    """

    def __init__(self, out_dir: str | Path | None = None) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.graph: ComputationGraph | None = None
        self.files: list[Path] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != 0 or batch_idx != 0 or not isinstance(pl_module, D2LModule):
            return
        if not trainer.is_global_zero:
            return
        self.graph, figure = graph_figure(pl_module, tuple(batch))
        files = log_graph_files(figure, trainer.loggers, self.out_dir)
        if self.out_dir is not None:
            self.files = files


def log_graph_files(figure: Figure, loggers: Iterable[Any], out_dir: Path | None = None) -> list[Path]:
    """Render ``figure`` once as graph.svg and graph.png (into ``out_dir``, else a temporary folder) and store
    both files on the run of every logger that takes files (``log_file``). Returns the files in ``out_dir``."""
    takers = [logger for logger in loggers if callable(getattr(logger, "log_file", None))]
    if out_dir is None and not takers:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        files = save_figure(figure, out_dir if out_dir is not None else Path(scratch))
        for logger in takers:
            for path in files:
                logger.log_file(path)
    return files if out_dir is not None else []
