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

from lit_d2l.ablation.ray_backend import (
    NODE_TAG,
    Cluster,
    add_backend_options,
    check_backend,
    connected,
    dead_node_check,
    run_on_ray,
    worker_place,
)
from lit_d2l.errors import ConfigError, UserError
from lit_d2l.noise import lightning_info_off
from lit_d2l.progress import Progress
from lit_d2l.runner import RunResult, build, execute, run_configured
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import closing
from lit_d2l.tracking.store import dashboard_hint
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG, SweepStore


@dataclass
class CrossValidation:
    """The parent run and the result of every fold."""

    parent_run_id: str
    folds: list[RunResult]
    summary: dict[str, float]
    totals: str = ""  # "5 folds in 0:12: 5 finished, 0 diverged, 0 failed, 0 skipped"
    tracking_uri: str = ""  # the store the runs are in


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-d2l cv", add_help=False)
    parser.add_argument("--folds", type=int, default=5)
    add_backend_options(parser)
    known, rest = parser.parse_known_args(argv)
    result = cross_validate(rest, known.folds, backend=known.backend, address=known.address)
    if not is_rank_zero():  # another DDP process, which reran this command: rank 0 reports
        return 0
    for key in sorted(k for k in result.summary if k.endswith("_mean")):
        base = key.removesuffix("_mean")
        print(f"{base}: {result.summary[key]:.4g} ± {result.summary[base + '_std']:.2g} over {len(result.folds)} folds")
    hint = dashboard_hint(result.tracking_uri)
    print(f"{result.totals}; MLflow parent run {result.parent_run_id}, view it with: {hint}")
    return 0


def cross_validate(
    args: list[str],
    num_folds: int,
    echo: Callable[[str], None] = print,
    backend: str = "local",
    address: str | None = None,
) -> CrossValidation:
    """Fit fold 0..K-1 of the config in ``args``, a ``fold k/K`` line each; summarise the validation
    metrics on a parent run. ``backend="ray"`` fits the folds as Ray tasks (:mod:`lit_d2l.ablation.ray_backend`).

    Under DDP every process runs this loop (``ddp`` reruns the command in each), and each fold is one
    DDP fit; only rank 0 creates, tags and ends the runs, and prints.
    """
    if num_folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {num_folds}")
    check_backend(backend, address)
    parent: TrackingLogger | None = None
    folds: dict[int, RunResult] = {}
    progress = Progress("fold", num_folds, echo if is_rank_zero() else _silent)

    def report(fold: int, result: RunResult) -> None:
        folds[fold] = result
        shown = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(result.metrics.items()) if k.startswith("val/"))
        progress.report(f"(data.fold {fold})", result.outcome, f"{shown} (run {result.run_id})")

    with connected(address) if backend == "ray" else nullcontext() as cluster:
        try:
            for fold in range(num_folds):
                # Every fold fits the same model: Lightning's model summary and other notes once, for fold 0.
                with nullcontext() if fold == 0 else lightning_info_off():
                    cli = build("fit", _fold_args(args, fold, num_folds))
                    if cli is None or cli.logger is None:
                        raise ConfigError("cross-validation records its folds in MLflow: do not set trainer.logger")
                    if parent is None:
                        parent = _parent_run(cli.logger, num_folds)
                    if cluster is not None:  # fold 0 was built here to check the config and name the parent run
                        _folds_on_ray(args, num_folds, parent, report, cluster)
                        break
                    cli.logger.run_name = f"{parent.run_name}-fold{fold}"
                    cli.logger.set_tags(_fold_tags(parent, fold, num_folds))
                    report(fold, execute(cli, "fit"))
            results = [folds[fold] for fold in range(num_folds)]
            summary = summarise([fold.metrics for fold in results])
        except BaseException:
            if parent is not None:
                parent.finalize("failed")
            raise
    with closing(parent) as run:
        run.log_metrics(summary, step=0)
    parent_id = parent.run_id if is_rank_zero() else ""
    return CrossValidation(parent_id, results, summary, progress.summary(), parent.tracking_uri)


def _fold_args(args: list[str], fold: int, num_folds: int) -> list[str]:
    return [*args, "--data.num_folds", str(num_folds), "--data.fold", str(fold), "--test_after_fit", "false"]


def _fold_tags(parent: TrackingLogger, fold: int, num_folds: int) -> dict[str, str]:
    parent_id = parent.run_id if is_rank_zero() else ""  # other DDP ranks record nothing
    return {PARENT_TAG: parent_id, "fold": str(fold), "cv.folds": str(num_folds)}


#: Folds running side by side on Ray: no progress bars or model summaries interleaved in the driver's terminal.
_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@dataclass
class _Fold:
    """One fold as a Ray task (picklable)."""

    fold: int
    args: list[str]
    tags: dict[str, str]


def _folds_on_ray(
    args: list[str],
    num_folds: int,
    parent: TrackingLogger,
    report: Callable[[int, RunResult], None],
    cluster: Cluster,
) -> None:
    """Every fold as a Ray task, recorded under ``parent``; ``report`` each as it ends."""
    items = [
        _Fold(
            fold,
            [*_fold_args(args, fold, num_folds), *_QUIET, "--tracking.run_name", f"{parent.run_name}-fold{fold}"],
            _fold_tags(parent, fold, num_folds),
        )
        for fold in range(num_folds)
    ]

    def died(item: _Fold, how: str) -> None:
        SweepStore(parent.tracking_uri).close_stale(str(parent.name), dead_node_check())  # its run, left RUNNING
        if how != "cancelled":
            raise UserError(f"fold {item.fold} of {num_folds}: {how}; run lit-d2l cv again")

    run_on_ray(items, _run_fold, lambda done: report(*done), died, cluster)


def _run_fold(item: _Fold) -> tuple[int, RunResult]:
    """A fold in a Ray worker: an ordinary fit, its run tagged with the Ray node and the device it used."""
    node, device = worker_place()
    args = item.args if device is None else [*item.args, "--trainer.accelerator", "gpu", "--trainer.devices", "[0]"]
    where = "cpu" if device is None else f"cuda:{device}"
    result = run_configured("fit", args, tags={**item.tags, NODE_TAG: node, "device": where})
    assert result is not None
    return item.fold, result


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
