"""``lit-d2l cv``: K-fold cross-validation (D2L 5.7) as child runs of one MLflow parent run.

Each fold is an ordinary ``fit`` built through the same config path, with ``data.num_folds`` and
``data.fold`` added; the parent run gets the mean and standard deviation of each validation metric.
K-fold is a sweep over ``data.fold``: the parent is found again by a cv id (a digest of the settings),
and each fold is claimed as a sweep's arm x seed is (:mod:`lit_d2l.tracking.sweeps`). So the same
command run again resumes: FINISHED folds are kept, the others run again, each FINISHED exactly once. A fold
that stopped (a signal, a killed process) goes on in its own run from its newest checkpoint, as ``fit --resume``
would.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
from lit_d2l.callbacks.stored_first import remove_leftovers
from lit_d2l.errors import ConfigError, UserError
from lit_d2l.fit.checks import check_checkpoint
from lit_d2l.fit.parse import ParsedFit, parse_fit
from lit_d2l.fit.resume import latest_checkpoint
from lit_d2l.fit.run import RunResult, build, default_run_name, execute, run_configured
from lit_d2l.processes import interrupts
from lit_d2l.processes.quiet import lightning_info_off
from lit_d2l.sweeps.progress import Progress, plural
from lit_d2l.sweeps.ray_backend import (
    NODE_TAG,
    Cluster,
    check_backend,
    connected,
    dead_node_check,
    run_on_ray,
    worker_place,
)
from lit_d2l.tracking import TrackingLogger, resolve_tracking_uri
from lit_d2l.tracking.logger import closing, ends_on_error, ensure_experiment
from lit_d2l.tracking.sweeps import KIND_TAG, SWEEP_TAG, Child, SweepStore, as_child
from lit_d2l.tracking.takeover import take_over

#: The kind of a cross-validation's parent run (a sweep's is "sweep").
CV_KIND = "cross-validation"


@dataclass
class CrossValidation:
    """The parent run and the result of every fold."""

    parent_run_id: str
    folds: list[RunResult]
    summary: dict[str, float]
    totals: str = ""  # "5 folds in 0:12: 5 finished, 0 diverged, 0 failed, 0 skipped"
    tracking_uri: str = ""  # the store the runs are in


@dataclass
class _Claim:
    """What claims one fold's run under the parent (picklable, for a Ray task)."""

    tracking_uri: str
    experiment_id: str
    parent_id: str
    run_name: str
    tags: dict[str, str]
    resume: tuple[str, str] | None = None  # (the run a stop left the fold in, that stop's checkpoint)


#: How the fit of a fold runs in a claimed run: (run id, the checkpoint it goes on from, or None).
FoldFit = Callable[[str, "str | None"], RunResult]


def cross_validate(
    args: list[str],
    num_folds: int,
    echo: Callable[[str], None] = print,
    backend: str = "local",
    address: str | None = None,
    fresh: bool = False,
) -> CrossValidation:
    """Fit fold 0..K-1 of the config in ``args``, a ``fold k/K`` line each; summarise the validation
    metrics on a parent run. ``backend="ray"`` fits the folds as Ray tasks (:mod:`lit_d2l.sweeps.ray_backend`).

    The parent of the same settings and K is resumed (unless ``fresh``): its FINISHED folds are not fitted again.
    Under DDP every process runs this loop (``ddp`` reruns the command in each), and each fold is one
    DDP fit; only rank 0 creates, claims and ends the runs, and prints.
    """
    if num_folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {num_folds}")
    check_backend(backend, address)
    first = parse_fit(_fold_args(args, 0, num_folds))  # bad settings are refused before anything is recorded
    if first.config.trainer.logger not in (None, True):
        raise ConfigError("cross-validation records its folds in MLflow: do not set trainer.logger")
    cv_id = f"cv-{hashlib.sha256(first.text.encode()).hexdigest()[:10]}"  # data.fold 0, K and every other setting
    if not is_rank_zero():
        return _other_rank(args, num_folds, _folds_to_fit(first, cv_id, num_folds, fresh))
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
            progress = Progress("fold", len(pending), echo)
            results: dict[int, RunResult] = {}

            def report(fold: int, result: RunResult) -> None:
                results[fold] = result
                shown = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(result.metrics.items()) if k.startswith("val/"))
                progress.report(f"(data.fold {fold})", result.outcome, f"{shown} (run {result.run_id})")

            seed = str(first.seed or 0)
            claims = {
                fold: _fold_claim(store, parent, experiment_id, fold, num_folds, seed, stopped.get(fold))
                for fold in pending
            }
            if cluster is not None:
                _folds_on_ray(args, num_folds, claims, report, cluster)
            for index, fold in enumerate([] if cluster is not None else pending):
                # Every fold fits the same model: Lightning's model summary and other notes once, for the first.
                with nullcontext() if index == 0 else lightning_info_off():
                    report(fold, _claimed(store, claims[fold], _fit_here(args, fold, num_folds)))
            folds = [results[fold] if fold in results else _as_result(done[fold], store) for fold in range(num_folds)]
            summary = summarise([fold.metrics for fold in folds])
    with closing(parent) as run:
        run.log_metrics(summary, step=0)
    totals = progress.summary() + (f"; {len(done)} done before" if done else "")
    return CrossValidation(parent.run_id, folds, summary, totals, parent.tracking_uri)


def _parent_run(
    store: SweepStore, first: ParsedFit, cv_id: str, num_folds: int, fresh: bool
) -> tuple[TrackingLogger, str]:
    """(The cv's parent run, resumed or new, its experiment id); one a live process is running is refused."""
    settings = first.config.tracking
    experiment_id = ensure_experiment(store.client, settings.experiment, store.tracking_uri)
    store.close_stale(experiment_id)  # runs of killed processes: their folds run again
    name = f"{settings.run_name or _default_name(first)}-{num_folds}fold"
    parent_id, joined = store.open_parent(settings.experiment, experiment_id, cv_id, name, kind=CV_KIND, fresh=fresh)
    if joined:
        owner = as_child(store.client.get_run(parent_id)).owner
        raise UserError(
            f"cross-validation {cv_id} is running in {owner} (MLflow run {parent_id}): "
            "wait for it to end, or start another with --fresh"
        )
    parent = TrackingLogger(
        experiment_name=settings.experiment,
        tracking_uri=store.tracking_uri,
        run_name=store.client.get_run(parent_id).info.run_name,
        tags={"cv.folds": str(num_folds), KIND_TAG: CV_KIND, SWEEP_TAG: cv_id},
        run_id=parent_id,
    )
    return parent, experiment_id


def _default_name(first: ParsedFit) -> str:
    return default_run_name(first.config.get("config"), first.model)


def _finished(children: list[Child]) -> dict[int, Child]:
    """The folds among a cv's child runs that a run FINISHED, by fold."""
    return {int(c.tags["fold"]): c for c in children if c.status == "FINISHED" and "fold" in c.tags}


def _resumable(
    children: list[Child], fold: int, echo: Callable[[str], None] = lambda _: None
) -> tuple[str, str] | None:
    """(The newest run of ``fold`` that did not finish but left a checkpoint that loads, that newest checkpoint: a
    stop's, else the last epoch's), or None: the fold goes on there. One stopped before its first checkpoint is
    fitted again; so is one whose checkpoint does not load, which ``echo`` is told."""
    runs = [c for c in children if c.tags.get("fold") == str(fold) and c.status != "FINISHED"]
    for run in sorted(runs, key=lambda c: c.start_time, reverse=True):
        checkpoint = latest_checkpoint(run.tags.get(CHECKPOINT_DIR_TAG))
        if checkpoint is None:
            continue
        try:
            check_checkpoint(str(checkpoint))
        except ConfigError as exc:
            echo(f"data.fold {fold}: {str(exc).removeprefix('--ckpt_path ')}; it is fitted again from its start")
            continue
        return run.run_id, str(checkpoint)
    return None


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
    results = []
    for index, (fold, checkpoint) in enumerate(folds):
        with nullcontext() if index == 0 else lightning_info_off():
            cli = build("fit", [*_fold_args(args, fold, num_folds), *_from(checkpoint)])
            assert cli is not None
            results.append(execute(cli, "fit"))
    return CrossValidation("", results, {})


def _fold_args(args: list[str], fold: int, num_folds: int) -> list[str]:
    return [*args, "--data.num_folds", str(num_folds), "--data.fold", str(fold), "--test_after_fit", "false"]


def _from(checkpoint: str | None) -> list[str]:
    return [] if checkpoint is None else ["--ckpt_path", checkpoint]


def _fold_claim(
    store: SweepStore,
    parent: TrackingLogger,
    experiment_id: str,
    fold: int,
    num_folds: int,
    seed: str,
    resume: tuple[str, str] | None = None,
) -> _Claim:
    """Fold ``fold`` as a sweep's arm x seed: arm ``data.fold=k`` and the config's seed."""
    tags = {"fold": str(fold), "cv.folds": str(num_folds), "arm": f"data.fold={fold}", "seed": seed}
    return _Claim(store.tracking_uri, experiment_id, parent.run_id, f"{parent.run_name}-fold{fold}", tags, resume)


def _claimed(store: SweepStore, claim: _Claim, fit: FoldFit) -> RunResult:
    """Claim the fold (a new run under the parent), then ``fit(run_id, None)`` in it (:meth:`SweepStore.fit_claimed`);
    a stopped fold whose checkpoint is here is taken over instead (as ``fit --resume`` takes a run over) and goes
    on from it. A fold another process has FINISHED or is fitting meanwhile is refused in one line."""
    fold = claim.tags["fold"]
    if claim.resume is not None and Path(claim.resume[1]).is_file():  # on another Ray node, it is fitted again
        run_id, checkpoint = claim.resume
        with interrupts.deferred():
            take_over(store.tracking_uri, run_id, lambda run: _taken(fold, run.info.run_id, run.info.status))
        interrupts.raise_if_requested()
        remove_leftovers(Path(checkpoint).parent)  # written by a fit killed before they were stored
        return fit(run_id, checkpoint)
    result, taken = store.fit_claimed(
        claim.parent_id, claim.experiment_id, claim.run_name, claim.tags, lambda run_id: fit(run_id, None)
    )
    if result is None:
        raise UserError(f"fold {fold}: {taken}; run lit-d2l cv again once it ends")
    return result


def _taken(fold: str, run_id: str, status: str) -> str:
    """Why the stopped run of ``fold`` cannot go on here: FINISHED or RUNNING meanwhile (else "")."""
    if status in ("FINISHED", "RUNNING"):
        return f"fold {fold}: {status} in run {run_id} meanwhile; run lit-d2l cv again once it ends"
    return ""


def _fit_here(args: list[str], fold: int, num_folds: int) -> FoldFit:
    def fit(run_id: str, checkpoint: str | None) -> RunResult:
        cli = build("fit", [*_fold_args(args, fold, num_folds), *_from(checkpoint), "--tracking.run_id", run_id])
        assert cli is not None
        return execute(cli, "fit")

    return fit


def _as_result(child: Child, store: SweepStore) -> RunResult:
    """A fold FINISHED before, as this process would have returned it."""
    return RunResult(child.run_id, child.status, store.tracking_uri, dict(child.metrics), outcome=child.outcome)


#: Folds running side by side on Ray: no progress bars or model summaries interleaved in the driver's terminal.
_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@dataclass
class _Fold:
    """One fold as a Ray task (picklable)."""

    fold: int
    args: list[str]
    claim: _Claim


def _folds_on_ray(
    args: list[str],
    num_folds: int,
    claims: dict[int, _Claim],
    report: Callable[[int, RunResult], None],
    cluster: Cluster,
) -> None:
    """Every fold of ``claims`` as a Ray task, recorded under the parent; ``report`` each as it ends."""
    items = [_Fold(fold, [*_fold_args(args, fold, num_folds), *_QUIET], claim) for fold, claim in claims.items()]

    def died(item: _Fold, how: str) -> None:
        SweepStore(item.claim.tracking_uri).close_stale(item.claim.experiment_id, dead_node_check())  # left RUNNING
        if how != "cancelled":
            raise UserError(f"fold {item.fold} of {num_folds}: {how}; run lit-d2l cv again")

    run_on_ray(items, _run_fold, lambda done: report(*done), died, cluster)


def _run_fold(item: _Fold) -> tuple[int, RunResult]:
    """A fold in a Ray worker: an ordinary fit, its run tagged with the Ray node and the device it used; a retry
    first closes the run its lost attempt left RUNNING, so that it can claim the fold again."""
    node, device = worker_place()
    args = item.args if device is None else [*item.args, "--trainer.accelerator", "gpu", "--trainer.devices", "[0]"]
    where = "cpu" if device is None else f"cuda:{device}"
    store = SweepStore(item.claim.tracking_uri)
    store.close_stale(item.claim.experiment_id, dead_node_check())
    claim = _Claim(**{**vars(item.claim), "tags": {**item.claim.tags, NODE_TAG: node, "device": where}})

    def fit(run_id: str, checkpoint: str | None) -> RunResult:
        result = run_configured("fit", [*args, *_from(checkpoint), "--tracking.run_id", run_id])
        assert result is not None
        return result

    return item.fold, _claimed(store, claim, fit)


def summarise(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over folds of every ``val/`` metric all folds have."""
    keys = set.intersection(*(set(m) for m in fold_metrics))
    summary: dict[str, float] = {}
    for key in sorted(k for k in keys if k.startswith("val/")):
        values = [m[key] for m in fold_metrics]
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_std"] = statistics.pstdev(values)
    return summary


def is_rank_zero() -> bool:
    """True in the process that records runs: the only one, or DDP's global rank 0."""
    return rank_zero_only.rank == 0
