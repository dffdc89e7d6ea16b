"""``lit-d2l cv``: K-fold cross-validation (D2L 5.7) as child runs of one MLflow parent run.

Each fold is an ordinary ``fit`` built through the same config path, with ``data.num_folds`` and
``data.fold`` added; the parent run gets the mean and standard deviation of each validation metric.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_d2l.errors import ConfigError
from lit_d2l.noise import lightning_info_off
from lit_d2l.progress import Progress
from lit_d2l.runner import RunResult, build, execute
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import closing
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG


@dataclass
class CrossValidation:
    """The parent run and the result of every fold."""

    parent_run_id: str
    folds: list[RunResult]
    summary: dict[str, float]
    totals: str = ""  # "5 folds in 0:12: 5 finished, 0 diverged, 0 failed, 0 skipped"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-d2l cv", add_help=False)
    parser.add_argument("--folds", type=int, default=5)
    known, rest = parser.parse_known_args(argv)
    result = cross_validate(rest, known.folds)
    if not is_rank_zero():  # another DDP process, which reran this command: rank 0 reports
        return 0
    for key in sorted(k for k in result.summary if k.endswith("_mean")):
        base = key.removesuffix("_mean")
        print(f"{base}: {result.summary[key]:.4g} ± {result.summary[base + '_std']:.2g} over {len(result.folds)} folds")
    print(f"{result.totals}; MLflow parent run {result.parent_run_id}, view it with: lit-d2l ui")
    return 0


def cross_validate(args: list[str], num_folds: int, echo: Callable[[str], None] = print) -> CrossValidation:
    """Fit fold 0..K-1 of the config in ``args``, a ``fold k/K`` line each; summarise the validation
    metrics on a parent run.

    Under DDP every process runs this loop (``ddp`` reruns the command in each), and each fold is one
    DDP fit; only rank 0 creates, tags and ends the runs, and prints.
    """
    if num_folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {num_folds}")
    parent: TrackingLogger | None = None
    folds: list[RunResult] = []
    progress = Progress("fold", num_folds, echo if is_rank_zero() else _silent)
    try:
        for fold in range(num_folds):
            fold_args = [*args, "--data.num_folds", str(num_folds), "--data.fold", str(fold)]
            fold_args += ["--test_after_fit", "false"]
            # Every fold fits the same model: Lightning's model summary and other notes once, for fold 0.
            with nullcontext() if fold == 0 else lightning_info_off():
                cli = build("fit", fold_args)
                if cli is None or cli.logger is None:
                    raise ConfigError("cross-validation records its folds in MLflow: do not set trainer.logger")
                if parent is None:
                    parent = _parent_run(cli.logger, num_folds)
                cli.logger.run_name = f"{parent.run_name}-fold{fold}"
                parent_id = parent.run_id if is_rank_zero() else ""
                cli.logger.set_tags({PARENT_TAG: parent_id, "fold": str(fold), "cv.folds": str(num_folds)})
                folds.append(execute(cli, "fit"))
            shown = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(folds[-1].metrics.items()) if k.startswith("val/"))
            progress.report(f"(data.fold {fold})", folds[-1].outcome, f"{shown} (run {folds[-1].run_id})")
        summary = summarise([fold.metrics for fold in folds])
    except BaseException:
        if parent is not None:
            parent.finalize("failed")
        raise
    with closing(parent) as run:
        run.log_metrics(summary, step=0)
    parent_id = parent.run_id if is_rank_zero() else ""
    return CrossValidation(parent_run_id=parent_id, folds=folds, summary=summary, totals=progress.summary())


def summarise(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over folds of every ``val/`` metric all folds have."""
    keys = set.intersection(*(set(m) for m in fold_metrics))
    summary: dict[str, float] = {}
    for key in sorted(k for k in keys if k.startswith("val/")):
        values = [m[key] for m in fold_metrics]
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_std"] = statistics.pstdev(values)
    return summary


def _parent_run(child: TrackingLogger, num_folds: int) -> TrackingLogger:
    base = child.run_name or "cv"
    parent = TrackingLogger(
        experiment_name=child.experiment_name,
        tracking_uri=child.tracking_uri,
        run_name=f"{base}-{num_folds}fold",
        tags={"cv.folds": str(num_folds), KIND_TAG: "cross-validation"},
    )
    parent.log_hyperparams({"cv.folds": num_folds})
    if is_rank_zero():
        _ = parent.run_id
    return parent


def is_rank_zero() -> bool:
    """True in the process that records runs: the only one, or DDP's global rank 0."""
    return rank_zero_only.rank == 0


def _silent(_: str) -> None:
    """Progress lines of a DDP rank other than 0 go nowhere."""
