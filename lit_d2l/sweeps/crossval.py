"""``lit-d2l cv``: K-fold cross-validation (D2L 5.7) as child runs of one MLflow parent run.

K-fold is a sweep over ``data.fold``: each fold is an arm ``data.fold=k`` (with ``data.num_folds`` added) that
the sweep engine (:mod:`lit_d2l.sweeps.engine`) claims and fits as it does a sweep's arm x seed, here or on Ray,
and the parent run gets the mean and standard deviation of each validation metric. The parent is found again by
a cv id (a digest of the settings), so the same command run again resumes: FINISHED folds are kept, the others
run again, each FINISHED exactly once. A fold that stopped (a signal, a killed process) goes on in its own run
from its newest checkpoint, as ``fit --resume`` would.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_d2l.errors import ConfigError, UserError
from lit_d2l.fit.checks import has_option
from lit_d2l.fit.parse import ParsedFit, parse_fit
from lit_d2l.fit.run import build, default_run_name, execute
from lit_d2l.processes.quiet import lightning_info_off
from lit_d2l.sweeps.engine import (
    PairOutcome,
    PairTask,
    check_one_process,
    open_parent_run,
    pack_tasks,
    prepare_data,
    run_units,
    stopped_checkpoint,
    val_metrics,
)
from lit_d2l.sweeps.progress import plural
from lit_d2l.sweeps.ray_backend import check_backend, connected
from lit_d2l.tracking import TrackingLogger, resolve_tracking_uri
from lit_d2l.tracking.logger import closing, ends_on_error
from lit_d2l.tracking.sweeps import PARENT_TAG, Child, SweepStore, as_child

#: The kind of a cross-validation's parent run (a sweep's is "sweep").
CV_KIND = "cross-validation"


@dataclass
class CrossValidation:
    """The parent run and the result of every fold."""

    parent_run_id: str
    folds: list[PairOutcome]
    summary: dict[str, float]
    totals: str = ""  # "5 folds in 0:12: 5 finished, 0 diverged, 0 failed, 0 skipped"
    tracking_uri: str = ""  # the store the runs are in


def cross_validate(
    args: list[str],
    num_folds: int,
    echo: Callable[[str], None] = print,
    backend: str = "local",
    address: str | None = None,
    fresh: bool = False,
    workers: int = 1,
) -> CrossValidation:
    """Fit fold 0..K-1 of the config in ``args``, a ``fold k/K`` line each, in ``workers`` processes or as Ray
    tasks with ``backend="ray"`` (:mod:`lit_d2l.sweeps.ray_backend`); summarise the validation metrics on a parent run.

    The parent of the same settings and K is resumed (unless ``fresh``): its FINISHED folds are not fitted again.
    Under DDP every process runs this loop (``ddp`` reruns the command in each), and each fold is one
    DDP fit; only rank 0 creates, claims and ends the runs, and prints.
    """
    if num_folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {num_folds}")
    for option in ("--data.fold", "--data.num_folds"):
        if has_option(args, option):
            raise ConfigError(f"cv sets {option} of each fold itself: leave it out (--folds K says how many folds)")
    check_backend(backend, address, workers)
    first = parse_fit(_fold_args(args, 0, num_folds))  # bad settings are refused before anything is recorded
    if first.config.trainer.logger not in (None, True):
        raise ConfigError("cross-validation records its folds in MLflow: do not set trainer.logger")
    check_one_process(first, workers, "fold")
    cv_id = f"cv-{hashlib.sha256(first.text.encode()).hexdigest()[:10]}"  # data.fold 0, K and every other setting
    if not is_rank_zero():
        return _other_rank(args, num_folds, _folds_to_fit(first, cv_id, num_folds, fresh))
    if backend != "ray":  # on a cluster, the data is the nodes' to fetch
        prepare_data(first)
    with connected(address) if backend == "ray" else nullcontext() as cluster:
        store = SweepStore(resolve_tracking_uri(first.config.tracking.uri))
        parent, experiment_id = _parent_run(store, first, cv_id, num_folds, fresh)
        with ends_on_error(parent):
            parent.log_hyperparams({"cv.folds": num_folds})
            parent.flush()
            children = store.children_of(parent.run_id, experiment_id)
            done = _finished(children)
            pending = [fold for fold in range(num_folds) if fold not in done]
            if children:
                echo(f"resuming cross-validation {cv_id}: {len(done)} of {num_folds} folds done")
            stopped = {fold: found for fold in pending if (found := _resumable(children, fold, echo))}
            before = ", ".join(
                [f"{len(done)} done before"] * bool(done)
                + [f"data.fold {fold} goes on from {Path(ckpt).name}" for fold, (_, ckpt) in stopped.items()]
            )
            before = f" ({before})" if before else ""
            stop = ". Ctrl-C stops; run it again to resume" if pending else ""
            where = f"parent run {parent.run_id}{stop}"
            echo(f"cross-validation {cv_id}: {plural(len(pending), 'fold')} to train{before}; {where}")
            quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
            fold_args = [*args, *(quiet if cluster or workers > 1 else [])]
            seed = first.seed or 0
            tasks = [
                _fold_task(fold_args, fold, num_folds, seed, parent, experiment_id, stopped.get(fold))
                for fold in pending
            ]
            # Folds side by side (quiet): no progress bars or model summaries interleaved in the terminal. One after
            # another, every fold fits the same model: Lightning's notes once, for the first.
            units = pack_tasks(tasks, "off")
            outcomes, totals = run_units(
                units, echo, workers, cluster, _stop_at_failure, "fold", _fold_detail, first_speaks=True
            )
            _stop_at_failure(outcomes)
            fitted = {int(o.arm.removeprefix("data.fold=")): o for o in outcomes}
            folds = [fitted[fold] if fold in fitted else _as_outcome(done[fold]) for fold in range(num_folds)]
            summary = summarise([fold.metrics for fold in folds])
    with closing(parent) as run:
        run.log_metrics(summary, step=0)
        run.set_tags({"mlflow.note.content": description(summary, folds)})  # the answer, atop the run's page
    totals += f"; {len(done)} done before" if done else ""
    return CrossValidation(parent.run_id, folds, summary, totals, parent.tracking_uri)


def _parent_run(
    store: SweepStore, first: ParsedFit, cv_id: str, num_folds: int, fresh: bool
) -> tuple[TrackingLogger, str]:
    """(The cv's parent run, resumed or new, its experiment id); one a live process is running is refused."""
    settings = first.config.tracking
    name = f"{settings.run_name or default_run_name(first.config.get('config'), first.model)}-{num_folds}fold"
    tags = {"cv.folds": str(num_folds)}
    parent, run, joined = open_parent_run(store, settings.experiment, cv_id, name, CV_KIND, fresh, tags)
    if joined:
        raise UserError(
            f"cross-validation {cv_id} is running in {as_child(run).owner} (MLflow run {run.info.run_id}): "
            "wait for it to end, or start another with --fresh"
        )
    return parent, run.info.experiment_id


def _finished(children: list[Child]) -> dict[int, Child]:
    """The folds among a cv's child runs that a run FINISHED, by fold."""
    return {int(c.tags["fold"]): c for c in children if c.status == "FINISHED" and "fold" in c.tags}


def _resumable(
    children: list[Child], fold: int, echo: Callable[[str], None] = lambda _: None
) -> tuple[str, str] | None:
    return stopped_checkpoint([c for c in children if c.tags.get("fold") == str(fold)], f"data.fold {fold}", echo)


def _folds_to_fit(first: ParsedFit, cv_id: str, num_folds: int, fresh: bool) -> list[tuple[int, str | None]]:
    """The folds rank 0 fits, as another DDP process finds them (reading only): those its newest parent
    has not FINISHED, each with the checkpoint it goes on from (:func:`_resumable`) or None. Rank 0 resumes that
    parent (or starts one), and no fold can finish before every process has joined its first fit."""
    store = SweepStore(resolve_tracking_uri(first.config.tracking.uri))
    parent_id = None if fresh else store.find_parent(first.config.tracking.experiment, cv_id, CV_KIND)
    if parent_id is None:
        return [(fold, None) for fold in range(num_folds)]
    children = store.children_of(parent_id, store.client.get_run(parent_id).info.experiment_id)
    done = _finished(children)
    pending = [fold for fold in range(num_folds) if fold not in done]
    return [(fold, found[1] if (found := _resumable(children, fold)) else None) for fold in pending]


def _other_rank(args: list[str], num_folds: int, folds: list[tuple[int, str | None]]) -> CrossValidation:
    """A DDP process other than rank 0: its part of each fold's fit; it records and prints nothing."""
    for index, (fold, checkpoint) in enumerate(folds):
        with nullcontext() if index == 0 else lightning_info_off():
            resumed = [] if checkpoint is None else ["--ckpt_path", checkpoint]
            cli = build("fit", [*_fold_args(args, fold, num_folds), *resumed])
            assert cli is not None
            execute(cli, "fit")
    return CrossValidation("", [], {})


def _fold_args(args: list[str], fold: int, num_folds: int) -> list[str]:
    return [*args, "--data.num_folds", str(num_folds), "--data.fold", str(fold), "--test_after_fit", "false"]


def _fold_task(
    args: list[str],
    fold: int,
    num_folds: int,
    seed: int,
    parent: TrackingLogger,
    experiment_id: str,
    resume: tuple[str, str] | None,
) -> PairTask:
    """Fold ``fold`` as a sweep's arm x seed: arm ``data.fold=k`` and the config's seed, none of a sweep's callbacks."""
    arm = f"data.fold={fold}"
    return PairTask(
        arm=arm,
        seed=seed,
        args=_fold_args(args, fold, num_folds),
        tags={"fold": str(fold), "cv.folds": str(num_folds), "arm": arm, "seed": str(seed), PARENT_TAG: parent.run_id},
        tracking_uri=parent.tracking_uri,
        experiment_id=experiment_id,
        run_name=f"{parent.run_name}-fold{fold}",
        label=f"(data.fold {fold})",
        sweep_callbacks=False,
        resume=resume,
    )


def _fold_detail(outcome: PairOutcome) -> str:
    return f"{val_metrics(outcome, ' = ')} (run {outcome.run_id})"


def _stop_at_failure(outcomes: list[PairOutcome]) -> None:
    """A fold that failed, or that another process FINISHED or runs meanwhile, stops the cv in one line (under DDP
    the other processes could not go on to the next fold without it)."""
    for outcome in outcomes:
        if outcome.outcome in ("failed", "skipped"):
            fold = outcome.arm.removeprefix("data.fold=")
            raise UserError(f"data.fold {fold}: {outcome.error}; run lit-d2l cv again once it is fixed or ends")


def _as_outcome(child: Child) -> PairOutcome:
    """A fold FINISHED before, as this process would have fitted it."""
    return PairOutcome(child.arm, child.seed, child.outcome, child.run_id, dict(child.metrics))


def summarise(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over folds of every ``val/`` metric all folds have."""
    summary: dict[str, float] = {}
    for key in sorted(k for k in set.intersection(*map(set, fold_metrics)) if k.startswith("val/")):
        values = [m[key] for m in fold_metrics]
        summary |= {f"{key}_mean": statistics.fmean(values), f"{key}_std": statistics.pstdev(values)}
    return summary


def summary_lines(summary: dict[str, float], num_folds: int) -> list[str]:
    """``val/loss: 0.08214 ± 0.006 over 3 folds``, one line per validation metric."""
    means = sorted(key for key in summary if key.endswith("_mean"))
    return [
        f"{key.removesuffix('_mean')}: {summary[key]:.4g} ± {summary[key.removesuffix('_mean') + '_std']:.2g} "
        f"over {num_folds} folds"
        for key in means
    ]


def description(summary: dict[str, float], folds: list[PairOutcome]) -> str:
    """The parent run's description in MLflow: the mean ± (population) standard deviation of each validation
    metric over the folds, then each fold's values and run."""
    keys = sorted(key.removesuffix("_mean") for key in summary if key.endswith("_mean"))
    rows = [
        f"| {k} | {' | '.join(f'{f.metrics[key]:.4g}' for key in keys)} | {f.run_id} |" for k, f in enumerate(folds)
    ]
    head = [f"- **{line}**" for line in summary_lines(summary, len(folds))]
    table = [f"| data.fold | {' | '.join(keys)} | run |", "|" + " --- |" * (len(keys) + 2), *rows]
    return "\n".join([*head, "", "Mean ± population standard deviation over the folds.", "", *table])


def is_rank_zero() -> bool:
    """True in the process that records runs: the only one, or DDP's global rank 0."""
    return rank_zero_only.rank == 0
