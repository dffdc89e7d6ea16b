"""``lit-d2l ablate``: run every arm × seed of a sweep as a child of one MLflow parent run.

Each pair is an ordinary ``fit`` built through the same config path (base YAML + dotted
overrides). Every pair is claimed before it runs (:mod:`lit_d2l.tracking.sweeps`), so a pair is
FINISHED exactly once whatever else runs: re-running the spec resumes (FINISHED pairs are skipped,
runs whose process is gone are closed as KILLED), and two processes on one spec share the work.
A diverging arm is a result (tagged ``outcome=diverged``); a failing arm, or one whose worker
process died, is reported and the others go on. The units run here, in worker processes
(:mod:`~lit_d2l.sweeps.workers`), or as tasks on a Ray cluster (:mod:`~lit_d2l.sweeps.ray_backend`).
``lit-d2l cv`` runs its folds through :func:`run_units` too, each an arm ``data.fold=k``
(:mod:`~lit_d2l.sweeps.crossval`).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lit_d2l.callbacks import DivergenceGuard, Heartbeat, LayerDiagnostics
from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG
from lit_d2l.callbacks.stored_first import remove_leftovers
from lit_d2l.errors import ConfigError, UserError
from lit_d2l.fit.checks import as_dict, check_checkpoint
from lit_d2l.fit.parse import ParsedFit, parse_fit, with_values
from lit_d2l.fit.resume import latest_checkpoint
from lit_d2l.fit.run import RunResult, run_configured
from lit_d2l.processes import interrupts
from lit_d2l.processes.quiet import lightning_info_off, worker_quiet
from lit_d2l.sweeps.arm_values import swept_params, unique_short_names
from lit_d2l.sweeps.packs.plan import ONLY_ARM, Pack, plan_packs
from lit_d2l.sweeps.packs.run import run_pack
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
from lit_d2l.sweeps.reports.report import did_you_mean, summary_table
from lit_d2l.sweeps.reports.stability import stability_figures
from lit_d2l.sweeps.spec import PACK_MODES, SEED_KEYS, Arm, SweepSpec
from lit_d2l.sweeps.workers import supervise
from lit_d2l.tracking import TrackingLogger, resolve_tracking_uri
from lit_d2l.tracking.logger import ends_on_error, ensure_experiment, failure_text
from lit_d2l.tracking.races import set_tags
from lit_d2l.tracking.sweeps import KIND_TAG, PARENT_TAG, SWEEP_TAG, Child, SweepStore
from lit_d2l.tracking.takeover import take_over

if TYPE_CHECKING:
    from mlflow.entities import Run

# Arms are compared through the store: no per-epoch checkpoints (a stop signal still saves one).
QUIET_TRAINER = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
QUIET_TRAINER += ["--trainer.enable_checkpointing", "false"]
# Nor an MLflow model per arm (the cost): the arm `report --select --test` picks is trained again, with one.
QUIET_TRAINER += ["--tracking.log_model", "false"]


@dataclass
class PairOutcome:
    """What became of one arm × seed."""

    arm: str
    seed: int
    outcome: str  # finished | diverged | failed | skipped (claimed by another process)
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    device: str = "cpu"


@dataclass
class SweepResult:
    parent_run_id: str
    sweep_id: str
    skipped: int
    outcomes: list[PairOutcome]
    status: str = "FINISHED"  # of the parent run; RUNNING while another process still works on it

    @property
    def failed(self) -> list[PairOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]


@dataclass
class PairTask:
    """Everything a worker process needs to run one pair (picklable)."""

    arm: str
    seed: int
    args: list[str]
    tags: dict[str, str]
    tracking_uri: str
    experiment_id: str
    run_name: str
    max_grad_norm: float = 0.0  # 0: no divergence bound
    diagnostics_every: int = 0  # 0: no per-layer diagnostics
    settings: dict[str, Any] = field(default_factory=dict)  # the arm's swept settings and its seed
    params: dict[str, str] = field(default_factory=dict)  # the swept values as top-level params of the child run
    steps: float = 1.0  # its expected training steps: its weight in the sweep's ETA
    unit: str = ""  # which unit of the sweep it trains in ("pack 2/5 (12 arms)"), for the heartbeat lines
    label: str = ""  # how its progress line names it: "<arm> seed <seed>" unless given ("(data.fold 2)")
    resume: tuple[str, str] | None = None  # (the run a stop left it in, that stop's checkpoint): it goes on there
    sweep_callbacks: bool = True  # the sweep's diagnostics, divergence guard and heartbeat (a cv fold: none)
    #: its args as the plan parsed them, config and model, or config alone (this process only: a pack builds from it
    #: instead of parsing again)
    parsed: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "parsed": None}  # another process parses for itself

    def take_parsed(self) -> Any:
        """The plan's parse of this pair, once (None when there is none)."""
        parsed, self.parsed = self.parsed, None
        return parsed


@dataclass
class SweepPlan:
    """A sweep ready to run: its parent run (created or resumed) and the pairs still to run."""

    spec: SweepSpec
    store: SweepStore
    parent: TrackingLogger
    skipped: int  # pairs that already have a FINISHED child
    tasks: list[PairTask]  # the pairs to run, in spec order


def run_sweep(
    spec: SweepSpec,
    workers: int = 1,
    fresh: bool = False,
    tracking_uri: str | None = None,
    echo: Callable[[str], None] = print,
    pack: str = "auto",
    pack_size: int = 0,
    backend: str = "local",
    address: str | None = None,
) -> SweepResult:
    """Run (or resume) the sweep; returns when every pending pair has run.

    ``pack="auto"`` trains arms that differ only in packable settings side by side in one vectorized
    fit (:mod:`lit_d2l.sweeps.packs`), at most ``pack_size`` per pack when > 0; ``"off"`` fits every pair alone.
    ``backend="ray"`` runs the units as tasks on the Ray cluster at ``address`` (:mod:`~lit_d2l.sweeps.ray_backend`).
    """
    check_pack_options(pack, pack_size)
    check_backend(backend, address, workers)
    with connected(address) if backend == "ray" else nullcontext() as cluster:
        plan = plan_sweep(
            spec, resolve_tracking_uri(tracking_uri), fresh=fresh, echo=echo, workers=workers, fetch=cluster is None
        )
        with ends_on_error(plan.parent):
            units = pack_tasks(plan.tasks, pack, pack_size, cluster.slots if cluster else workers)
            echo(start_line(plan, units, f"{cluster.slots} Ray slots" if cluster else plural(workers, "worker")))
            for reason, count in Counter(u.reason for u in units if u.reason and u.reason not in PLAIN).items():
                echo(f"  {plural(count, 'run')} alone: {reason}")  # what a pack cannot do (--dry-run: per arm)
            outcomes = run_pairs(plan, workers, echo, units, cluster)
        return record_sweep(plan, outcomes, echo)


def start_line(plan: SweepPlan, units: list[Pack], workers: str) -> str:
    """What a sweep is about to do, printed before its first pair trains."""
    if not plan.tasks:  # every pair done, or running in another process
        done = f"{plan.skipped} done before"
        return f"sweep {plan.spec.sweep_id}: nothing left to train here ({done}); parent run {plan.parent.run_id}"
    packed = sum(unit.packed for unit in units)
    alone = len(units) - packed
    how = ", ".join(part for part in (plural(packed, "pack"), plural(alone, "single fit")) if part.split()[0] != "0")
    done = f" ({plan.skipped} done before)" if plan.skipped else ""
    return (
        f"sweep {plan.spec.sweep_id}: {plural(len(plan.tasks), 'run')} to train{done} as {how or 'nothing'} "
        f"on {workers}; parent run {plan.parent.run_id}. Ctrl-C stops; run it again to resume"
    )


#: Why a unit runs alone where the model could pack: nothing to say about the model.
PACK_OFF = "--pack off"
#: Why a pair a stop interrupted runs alone: it goes on from its stop's checkpoint, in its own run.
GOES_ON = "it goes on from the checkpoint its stop saved"
PLAIN = (ONLY_ARM, PACK_OFF)


def expected_steps(parsed: Any) -> float:
    """A pair's training steps, known before it trains: epochs × ceil(num_train / batch_size), capped by
    ``max_steps``. A DataModule without ``num_train`` counts one step an epoch (its epochs still weigh)."""
    trainer, data = parsed.trainer_kwargs, parsed.datamodule
    num_train, batch_size = getattr(data, "num_train", None), getattr(data, "batch_size", None)
    per_epoch = math.ceil(num_train / batch_size) if num_train and batch_size else 1
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        per_epoch = min(per_epoch, limit)
    elif isinstance(limit, float):
        per_epoch = max(1, math.ceil(per_epoch * limit))
    epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps") or -1
    if epochs is None or epochs < 0:  # Lightning's default: 1,000 epochs unless max_steps says otherwise
        epochs = 1000 if epochs is None or max_steps < 0 else math.inf
    steps = epochs * per_epoch
    return float(min(steps, max_steps) if max_steps > 0 else steps)


#: The model's own SGD settings: an arm trained with a configured ``--optimizer`` takes that optimizer's instead.
MODEL_SGD_KEYS = ("model.lr", "model.momentum", "model.weight_decay")


def parse_arm(spec: SweepSpec, arm: Arm, extra: list[str]) -> Any:
    """The arm's ``fit`` arguments (with its first seed and ``extra``) parsed and checked, as its runs will be; a bad
    value is refused in one line that names the spec and the arm."""
    try:
        parsed = parse_fit([*QUIET_TRAINER, *spec.fit_args(arm, spec.seeds[0]), *extra])
    except ConfigError as exc:
        # The arm's own values are at fault unless the base config and overrides fail alike without them (a grid may
        # give a value they need, as step_size for an overrides' StepLR).
        if arm.settings and str(_parse_error(spec, extra)) != str(exc):
            raise ConfigError(f"{spec.path}, arm {arm.key}: {exc}") from None
        if spec.overrides and _parse_error(replace(spec, overrides={}), extra) is None:  # the spec's overrides are
            raise ConfigError(f"{spec.path}, overrides: {exc}") from None
        raise
    check_arm_settings(arm, parsed)
    return parsed


def _parse_error(spec: SweepSpec, extra: list[str]) -> ConfigError | None:
    """Why the spec's base config and its overrides alone (no arm's values) do not parse, or None."""
    try:
        parse_fit([*QUIET_TRAINER, *spec.fit_args(Arm(()), spec.seeds[0]), *extra])
    except ConfigError as exc:
        return exc
    return None


def check_one_process(parsed: Any, workers: int, what: str) -> None:
    """Refuse ``--workers`` > 1 with a fit of several processes (DDP): the workers and the fit's other processes
    would wait on each other."""
    if workers > 1 and (processes := fit_processes(parsed.trainer_kwargs)) > 1:
        raise ConfigError(
            f"--workers fits each {what} in one process, but trainer.devices x trainer.num_nodes is {processes} "
            "(one fit in several processes): give one or the other"
        )


def fit_processes(trainer: dict[str, Any]) -> int:
    """How many processes a fit of these Trainer settings runs in: trainer.devices x trainer.num_nodes (auto: 1)."""
    devices, text = trainer.get("devices", "auto"), str(trainer.get("devices", "auto"))
    if not isinstance(devices, list | tuple):  # 2, "2", "0,1", auto
        devices = text.split(",") if "," in text else range(int(text) if text.isdigit() else 1)
    return len([device for device in devices if str(device).strip()]) * int(trainer.get("num_nodes") or 1)


def check_arm_settings(arm: Arm, parsed: Any) -> None:
    """Refuse an arm that varies the model's own SGD settings while an ``--optimizer`` is configured: its
    arms would all train alike (the configured optimizer takes its own lr, momentum, weight decay)."""
    optimizer = as_dict(parsed.config.get("optimizer"))
    swept = [key for key in MODEL_SGD_KEYS if key in dict(arm.settings)]
    if optimizer is not None and swept:
        name = optimizer["class_path"].rsplit(".", 1)[-1]
        raise UserError(
            f"{swept[0]} varies between arms, but they train with optimizer {name}, which ignores it: "
            f"vary optimizer.{swept[0].split('.', 1)[1]} instead"
        )


def check_pack_options(pack: str, pack_size: int) -> None:
    if pack not in PACK_MODES:
        raise UserError(f"--pack must be one of {', '.join(PACK_MODES)}, got {pack!r}")
    if pack_size < 0:
        raise UserError(f"--pack-size must be >= 0 (0: as many as fit in memory), got {pack_size}")


def pack_tasks(tasks: list[PairTask], pack: str = "auto", pack_size: int = 0, workers: int = 1) -> list[Pack]:
    """The units of work: packs of pairs that train together, or (``pack="off"``) one pair each."""
    if pack == "off":
        return [Pack([task], PACK_OFF) for task in tasks]
    going_on = [Pack([task], GOES_ON) for task in tasks if task.resume]  # a pack does not load a fit's checkpoint
    fresh = [task for task in tasks if not task.resume]
    return going_on + plan_packs(
        fresh, lambda t: t.settings, lambda t: t.args, max_arms=pack_size, workers=workers, parsed=_plan_parse
    )


def _plan_parse(task: PairTask) -> ParsedFit | None:
    return task.parsed if isinstance(task.parsed, ParsedFit) else None


def open_parent_run(
    store: SweepStore,
    experiment: str,
    sweep_id: str,
    name: str,
    kind: str = "sweep",
    fresh: bool = False,
    tags: dict[str, str] | None = None,
) -> tuple[TrackingLogger, Run, bool]:
    """(A logger of the parent run of ``sweep_id``, that run, whether a live process runs it): joined, resumed
    (unless ``fresh``) or created (:meth:`SweepStore.open_parent`), once the experiment's runs left RUNNING by
    killed processes are closed, even ones that died after this process started."""
    experiment_id = ensure_experiment(store.client, experiment, store.tracking_uri)
    store.close_stale(experiment_id)
    parent_id, joined = store.open_parent(experiment, experiment_id, sweep_id, name, kind=kind, fresh=fresh)
    run = store.client.get_run(parent_id)
    tags = {KIND_TAG: kind, SWEEP_TAG: sweep_id, **(tags or {})}
    parent = TrackingLogger(experiment, store.tracking_uri, run.info.run_name, tags, run_id=parent_id)
    return parent, run, joined


def plan_sweep(
    spec: SweepSpec,
    uri: str,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    workers: int = 1,
    fetch: bool = False,
) -> SweepPlan:
    """Check every arm parses (and, with ``workers`` > 1, fits in one process), with ``fetch`` prepare each of its
    datasets once (a download that fails is one line here, not one per run), join the sweep's live parent run or
    resume (unless ``fresh``) or create one, and list the pairs that no run has FINISHED yet."""
    where = ["--tracking.uri", uri, "--tracking.experiment", spec.name]
    steps, first_seed = {}, {}
    for arm in spec.arms:  # every arm must parse, and its model and data build, before any run starts
        first_seed[arm.key] = parse_arm(spec, arm, where)
        steps[arm.key] = expected_steps(first_seed[arm.key])
        check_one_process(first_seed[arm.key], workers, "run")
    datasets = {json.dumps(as_dict(p.config.get("data")), sort_keys=True, default=str): p for p in first_seed.values()}
    for parsed in datasets.values() if fetch else ():
        prepare_data(parsed)
    store, sweep_id = SweepStore(uri), spec.sweep_id
    parent, parent_run, joined = open_parent_run(store, spec.name, sweep_id, sweep_id, fresh=fresh)
    experiment_id = parent_run.info.experiment_id
    children = store.children(parent_run)
    done = {(c.arm, c.seed) for c in children if c.status == "FINISHED"}
    elsewhere = {(c.arm, c.seed) for c in children if c.live}
    if joined:
        echo(f"joining sweep {sweep_id}, running in another process: {plural(len(elsewhere), 'pair')} running there")
    elif done or children:
        echo(f"resuming sweep {sweep_id}: {len(done)} of {len(spec.pairs())} pairs done")
    with ends_on_error(parent):
        if not joined and "sweep.spec" not in parent_run.data.params:  # a new parent, or one that died undescribed
            _describe_sweep(parent, spec)
        parent.flush()
        names = _run_names(spec.arms)
        tasks = [
            PairTask(
                arm=arm.key,
                seed=seed,
                args=[*QUIET_TRAINER, *spec.fit_args(arm, seed), *where],
                tags={SWEEP_TAG: sweep_id, "arm": arm.key, "arm_settings": arm.settings_json, "seed": str(seed)},
                max_grad_norm=spec.max_grad_norm,
                diagnostics_every=spec.diagnostics_every,
                tracking_uri=uri,
                experiment_id=experiment_id,
                run_name=f"{names[arm.key]}/s{seed}"[:240],
                params=swept_params(dict(arm.settings)),
                settings=spec.settings(arm, seed),
                steps=steps[arm.key],
                # each arm is parsed once: the other seeds' configs come from the first's (only the seeds differ)
                parsed=first_seed[arm.key]
                if seed == spec.seeds[0]
                else with_values(first_seed[arm.key].config, dict.fromkeys(SEED_KEYS, seed)),
            )
            for arm, seed in spec.pairs()
            if (arm.key, seed) not in done | elsewhere
        ]
        tried, again = {(c.arm, c.seed) for c in children}, []
        for task in tasks:
            task.tags[PARENT_TAG] = parent.run_id
            runs = [c for c in children if (c.arm, c.seed) == (task.arm, task.seed)]
            task.resume = stopped_checkpoint(runs, f"{task.arm} seed {task.seed}", echo)
            if task.resume:
                echo(f"  {task.arm} seed {task.seed} goes on from {Path(task.resume[1]).name} (run {task.resume[0]})")
            elif (task.arm, task.seed) in tried:  # stopped in a pack or before a checkpoint, killed, or failed
                again.append(f"{task.arm} seed {task.seed}")
        if again:
            shown = ", ".join(again[:3]) + (", ..." if len(again) > 3 else "")
            echo(f"  {plural(len(again), 'pair')} that did not finish train again from the start: {shown}")
    return SweepPlan(spec, store, parent, skipped=len(done), tasks=tasks)


def prepare_data(parsed: ParsedFit) -> None:
    """Prepare a fit's data as Lightning will before its run (download it, make its splits), on a copy and with the
    random stream kept (each fit builds its own): a download that fails, or splits that cannot be made, are one line
    before a sweep records anything, not one failure per run."""
    with torch.random.fork_rng(devices=[]):
        copy.deepcopy(parsed.datamodule).prepare_data()


def stopped_checkpoint(runs: list[Child], name: str, echo: Callable[[str], None]) -> tuple[str, str] | None:
    """(The newest of one pair's ``runs`` that did not finish but left a checkpoint that loads, that newest
    checkpoint: a stop's, else the last epoch's), or None: the pair goes on there. One stopped before its first
    checkpoint is fitted again; so is one whose checkpoint does not load, which ``echo`` is told."""
    for run in sorted((r for r in runs if r.status != "FINISHED"), key=lambda r: r.start_time, reverse=True):
        checkpoint = latest_checkpoint(run.tags.get(CHECKPOINT_DIR_TAG))
        if checkpoint is None:
            continue
        try:
            check_checkpoint(str(checkpoint))
        except ConfigError as exc:
            echo(f"{name}: {str(exc).removeprefix('--ckpt_path ')}; it is fitted again from its start")
            continue
        return run.run_id, str(checkpoint)
    return None


def run_pairs(
    plan: SweepPlan,
    workers: int = 1,
    echo: Callable[[str], None] = print,
    units: list[Pack] | None = None,
    cluster: Cluster | None = None,
) -> list[PairOutcome]:
    """Run the plan's pending pairs (as ``units``: packs, by default one pair each) in ``workers``
    processes, or as tasks on a Ray ``cluster``; one line per finished pair goes to ``echo``."""
    units = units if units is not None else [Pack([task]) for task in plan.tasks]
    return run_units(units, echo, workers, cluster, _metrics_check(plan, echo))[0]


def _metrics_check(plan: SweepPlan, echo: Callable[[str], None]) -> Callable[[list[PairOutcome]], None]:
    """Once a first run has finished: a line for each of the spec's metrics it did not log (a misspelt name is said
    while the sweep trains, not once it has trained)."""
    checked = False

    def check(results: list[PairOutcome]) -> None:
        nonlocal checked
        first = next((o for o in results if o.outcome == "finished" and o.run_id), None)
        if checked or first is None:
            return
        checked = True
        logged = sorted(plan.store.client.get_run(first.run_id).data.metrics)
        for metric in (m for m in plan.spec.metrics if m not in logged):
            hint = did_you_mean(metric, logged, who="it")
            echo(
                f"note: the first run to finish logged no {metric} (of the spec's metrics:); {hint} Ctrl-C and fix "
                "the spec (a new sweep), or let it train: the verdict ranks on the metrics logged"
            )

    return check


def record_sweep(plan: SweepPlan, outcomes: list[PairOutcome], echo: Callable[[str], None] = print) -> SweepResult:
    """Log the summary table on the parent and end it: FINISHED once every pair has a FINISHED child, else FAILED
    where a pair failed, KILLED where the pairs left were stopped (say, in another process), with a line saying so.

    While another process still runs pairs of the sweep, the parent stays open: the last one ends it.
    """
    spec, parent, store = plan.spec, plan.parent, plan.store
    with ends_on_error(parent):
        children = store.children(store.client.get_run(parent.run_id))
        table = summary_table(children, spec.metrics)
        parent.log_text(table, "summary.md")
        finished = {(c.arm, c.seed) for c in children if c.status == "FINISHED"}
        left = [(arm.key, seed) for arm, seed in spec.pairs() if (arm.key, seed) not in finished]
        elsewhere = [c for c in children if c.live and not c.owned_here]
    echo(table)
    result = SweepResult(parent.run_id, spec.sweep_id, skipped=plan.skipped, outcomes=outcomes)
    if elsewhere and left:
        parent.flush()
        running = plural(len(elsewhere), "pair")
        echo(f"{running} still running in another process ({elsewhere[0].owner}); it ends the sweep")
        result.status = "RUNNING"
        return result
    unfinished = set(left)
    failed = bool(result.failed) or any(c.status == "FAILED" for c in children if (c.arm, c.seed) in unfinished)
    if left:
        first = f"{left[0][0]} seed {left[0][1]}" + (", ..." if len(left) > 1 else "")
        how = "failed or stopped" if failed else "stopped (here or in another process)"
        them = "it" if len(left) == 1 else "them"
        echo(f"{plural(len(left), 'pair')} not FINISHED ({first}): {how}; run the same command again to train {them}")
    parent.end("FINISHED" if not left else "FAILED" if failed else "KILLED")
    result.status = parent.status or "FAILED"
    return result


def _describe_sweep(parent: TrackingLogger, spec: SweepSpec) -> None:
    """What a new parent run records about its sweep: the spec, and the stability figures if asked."""
    params = {"spec": str(spec.path), "base": str(spec.base), "arms": len(spec.arms)}
    params |= {key: json.dumps(getattr(spec, key)) for key in ("seeds", "metrics", "axes")}
    params |= {"description": spec.description} if spec.description else {}
    parent.log_hyperparams({f"sweep.{key}": value for key, value in params.items()})
    parent.log_text(spec.path.read_text(), "sweep.yaml")
    if spec.stability_demo:
        parent.log_metrics(stability_figures(), step=0)


def val_metrics(outcome: PairOutcome, between: str = "=") -> str:
    """The validation metrics of a finished run: ``val/acc=0.91, val/loss=0.31``."""
    return ", ".join(f"{k}{between}{v:.4g}" for k, v in sorted(outcome.metrics.items()) if k.startswith("val/"))


def run_units(
    units: list[Pack],
    echo: Callable[[str], None],
    workers: int = 1,
    cluster: Cluster | None = None,
    check: Callable[[list[PairOutcome]], None] = lambda results: None,
    noun: str = "arm",
    detail: Callable[[PairOutcome], str] = val_metrics,
    first_speaks: bool = False,
) -> tuple[list[PairOutcome], str]:
    """Run every unit (here, in ``workers`` processes, or on a Ray ``cluster``): one progress line per pair as it
    ends (``detail`` says what of a finished one), ``check(results)`` after each unit but the last; (the outcomes,
    ``12 arms in 1:05: 10 finished, ...``). Lightning's notes (a banner, a model summary) are off, but for the
    first unit when ``first_speaks``: every pair trains a model alike."""
    outcomes: list[PairOutcome] = []
    tasks = {(task.arm, task.seed): task for unit in units for task in unit.units}
    progress = Progress(noun, len(tasks), echo, work=sum(task.steps for task in tasks.values()))
    for number, unit in enumerate(units, 1):
        place = f"pack {number}/{len(units)} ({len(unit.units)} arms)" if unit.packed else f"fit {number}/{len(units)}"
        for task in unit.units:
            task.unit = place

    def report(results: list[PairOutcome]) -> None:
        progress.credit(sum(tasks[o.arm, o.seed].steps for o in results), len(results))  # one ETA a unit
        for outcome in results:
            outcomes.append(outcome)
            task = tasks[outcome.arm, outcome.seed]
            said = outcome.error if outcome.outcome in ("failed", "skipped") else detail(outcome)
            progress.report(task.label or f"{task.arm} seed {task.seed}", outcome.outcome, said or "", work=0.0)
        if len(outcomes) < len(tasks):  # while a Ctrl-C can still save training
            check(results)

    def died(unit: list[PairTask], how: str) -> list[PairOutcome]:
        gone = dead_node_check() if cluster is not None else None
        SweepStore(unit[0].tracking_uri).close_stale(unit[0].experiment_id, gone)  # its runs, left RUNNING
        return [PairOutcome(task.arm, task.seed, "failed", error=how) for task in unit]

    work = [unit.units for unit in units]
    if cluster is None and (workers == 1 or len(work) <= 1):
        for index, unit in enumerate(work):
            with nullcontext() if index == 0 and first_speaks else lightning_info_off():
                report(_run_unit(unit))
        return outcomes, progress.summary()
    with lightning_info_off():  # one line per arm instead of Lightning's banner per Trainer
        if cluster is not None:
            run_on_ray(work, _run_ray_unit, report, died, cluster)
        else:
            gpus = torch.cuda.device_count()  # 0 without CUDA
            settings = [(worker % gpus if gpus else None, workers) for worker in range(workers)]
            supervise(work, settings, report, died, _init_worker)
    return outcomes, progress.summary()


def _run_unit(unit: list[PairTask], device: int | None = None) -> list[PairOutcome]:
    """One unit of work, on GPU ``device`` if given: a pair alone, or a pack of pairs in one vectorized fit."""
    if len(unit) == 1:
        return [_run_task(unit[0], device)]
    return run_pack(unit, lambda task, kind, **details: PairOutcome(task.arm, task.seed, kind, **details), device)


def _run_ray_unit(unit: list[PairTask]) -> list[PairOutcome]:
    """A unit as a Ray task: on its node's GPU if it got one, its runs tagged with the node; a retry first
    closes the runs its lost attempt left RUNNING, so that it can claim their pairs again."""
    node, device = worker_place()
    first = unit[0]
    SweepStore(first.tracking_uri).close_stale(first.experiment_id, dead_node_check())
    return _run_unit([replace(task, tags={**task.tags, NODE_TAG: node}) for task in unit], device)


def _init_worker(setting: tuple[int | None, int]) -> Callable[[list[PairTask]], list[PairOutcome]]:
    """Bind this worker to one GPU (when there are GPUs) or to its share of the CPU threads; what runs a unit here."""
    device, workers = setting
    worker_quiet()
    if device is None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    return functools.partial(_run_unit, device=device)


def _run_task(task: PairTask, device_index: int | None = None) -> PairOutcome:
    """Claim the pair, then fit it in the claimed run (or report it taken by another process); a pair a stop left
    with a checkpoint here goes on in its own run from that checkpoint."""
    task.take_parsed()  # a single fit parses through LightningCLI itself
    args, device = list(task.args), "cpu"
    if device_index is not None:
        args += ["--trainer.accelerator", "gpu", "--trainer.devices", f"[{device_index}]"]
        device = f"cuda:{device_index}"
    callbacks = _sweep_callbacks(task) if task.sweep_callbacks else []

    def fit(run_id: str, checkpoint: str | None = None) -> RunResult:
        store.log_params(run_id, task.params)
        resumed = [] if checkpoint is None else ["--ckpt_path", checkpoint]
        result = run_configured("fit", [*args, *resumed, "--tracking.run_id", run_id], callbacks=callbacks)
        assert result is not None
        return result

    tags = {**task.tags, "device": device}
    try:
        store = SweepStore(task.tracking_uri)
        if task.resume is not None and Path(task.resume[1]).is_file():  # on another Ray node, it trains again
            where = {key: tags[key] for key in (NODE_TAG, "device") if key in tags}  # where it trains now
            result, taken = _go_on(store, task.resume, where, fit), ""
        else:
            result, taken = store.fit_claimed(task.tags[PARENT_TAG], task.experiment_id, task.run_name, tags, fit)
    except Exception as exc:  # a failing arm is reported; the sweep goes on
        return PairOutcome(task.arm, task.seed, "failed", error=failure_text(exc), device=device)
    if result is None:
        return PairOutcome(task.arm, task.seed, "skipped", error=taken, device=device)
    return PairOutcome(task.arm, task.seed, result.outcome, result.run_id, result.metrics, device=device)


def _sweep_callbacks(task: PairTask) -> list:
    # Before the guard, so a run diverging at step 0 still logs its step-0 norms; the table without its figure,
    # as in a pack: the sweep's report draws every arm's norms in one.
    every = task.diagnostics_every
    diagnostics = [LayerDiagnostics(every_n_steps=every, figure=False)] if every > 0 else []
    return [*diagnostics, DivergenceGuard(max_grad_norm=task.max_grad_norm), Heartbeat(task.unit or task.run_name)]


def _go_on(
    store: SweepStore, resume: tuple[str, str], where: dict[str, str], fit: Callable[[str, str], RunResult]
) -> RunResult:
    """The stopped run taken over (as ``fit --resume`` takes one over) and tagged with ``where`` it trains now
    (device, Ray node), then fitted on from its checkpoint."""
    run_id, checkpoint = resume
    with interrupts.deferred():
        take_over(store.tracking_uri, run_id, _taken)
        set_tags(store.client, run_id, where)
    interrupts.raise_if_requested()
    remove_leftovers(Path(checkpoint).parent)  # written by a fit killed before they were stored
    return fit(run_id, checkpoint)


def _taken(run: Any) -> str:
    """Why a stopped run cannot go on here: FINISHED or RUNNING meanwhile (else "")."""
    status = run.info.status
    return f"{status} in run {run.info.run_id} meanwhile" if status in ("FINISHED", "RUNNING") else ""


def _run_names(arms: list[Arm]) -> dict[str, str]:
    """Each arm's child-run name without its seed: ``l2=3``, ``normal σ=1 tanh depth=30`` (unique in the sweep)."""
    return dict(zip((arm.key for arm in arms), unique_short_names([dict(arm.settings) for arm in arms]), strict=True))
