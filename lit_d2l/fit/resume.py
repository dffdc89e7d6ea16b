"""``lit-d2l fit --resume RUN_ID``: continue an interrupted fit in the same MLflow run; and ``validate`` / ``test
--run RUN_ID``: evaluate a run's newest checkpoint with its own config (:func:`evaluate_args`).

The run's own config (its ``config.yaml`` artifact) is used unless ``--config`` is given; its
newest checkpoint (saved at the exact step on SIGTERM/SIGHUP/Ctrl-C, else the last epoch's) is
restored; the logger takes the run over and skips values the run already stored, so its metric
history has every step once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_d2l.callbacks.graceful_stop import CHECKPOINT_DIR_TAG, STOP_PREFIX
from lit_d2l.callbacks.stored_first import remove_leftovers
from lit_d2l.errors import ConfigError, UserError
from lit_d2l.fit.checks import has_option
from lit_d2l.tracking.liveness import KIND_TAG, OWNER_TAG, Owner
from lit_d2l.tracking.logger import flatten, param_text
from lit_d2l.tracking.run_record import CONFIG_ARTIFACT, config_params
from lit_d2l.tracking.runs import config_of, stored_run
from lit_d2l.tracking.store import resolve_tracking_uri
from lit_d2l.tracking.sweeps import PARENT_TAG
from lit_d2l.tracking.takeover import take_over

#: Settings a resumed run must keep: anything that changes what is computed.
FIXED_SECTIONS = ("model", "data", "seed_everything", "optimizer", "lr_scheduler")


def option_value(args: list[str], name: str) -> str | None:
    """The value of ``name VALUE`` / ``name=VALUE`` in run settings not parsed yet (the last one wins)."""
    value: str | None = None
    for index, item in enumerate(args):
        if item == name and index + 1 < len(args):
            value = args[index + 1]
        elif item.startswith(name + "="):
            value = item.split("=", 1)[1]
    return value


def resume_args(run_id: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``fit`` arguments that continue run ``run_id``, and the params it recorded."""
    uri = resolve_tracking_uri(option_value(args, "--tracking.uri"))
    run = stored_run(uri, run_id)
    rank_zero = rank_zero_only.rank == 0  # under srun/torchrun every rank resumes; rank 0 takes the run over
    if rank_zero and (why := _refusal(run_id, run.status, run.tags)):
        raise UserError(why)
    checkpoint = latest_checkpoint(run.tags.get(CHECKPOINT_DIR_TAG))
    if checkpoint is None:
        raise UserError(
            f"run {run_id} saved no checkpoint to resume from (it stopped before its first step, or its "
            "checkpoints were deleted); start it again with lit-d2l fit"
        )
    args = _with_run_config(uri, run_id, args)
    if rank_zero:  # exclusive: two resumes started at once must not both train (the logger settles the claim)
        take_over(uri, run_id, lambda now: _refusal(run_id, now.info.status, now.data.tags))
        remove_leftovers(checkpoint.parent)  # written by a fit killed before they were stored
    where = ["--tracking.uri", uri, "--tracking.experiment", run.experiment, "--tracking.run_id", run_id]
    return [*args, "--ckpt_path", str(checkpoint), *where], run.params


def evaluate_args(run_id: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``validate``/``test`` arguments that evaluate run ``run_id``'s newest checkpoint, recorded in that run."""
    uri = resolve_tracking_uri(option_value(args, "--tracking.uri"))
    run = stored_run(uri, run_id)
    if run.status == "RUNNING":
        owner = run.tags.get(OWNER_TAG) or "an unknown process"
        raise UserError(f"run {run_id} is still running ({owner}); wait for it to end")
    if run.status != "FINISHED":  # evaluated in it, it would end FINISHED: a stopped fit could not be resumed
        raise UserError(
            f"run {run_id} is {run.status}, not trained to its end: finish it with lit-d2l fit --resume {run_id}, "
            "or evaluate its checkpoint in a new run with --ckpt_path FILE --config FILE"
        )
    checkpoint = latest_checkpoint(run.tags.get(CHECKPOINT_DIR_TAG))
    if checkpoint is None:
        raise UserError(
            f"run {run_id} saved no checkpoint (trainer.enable_checkpointing was off, or its files were deleted); "
            "give --ckpt_path FILE instead"
        )
    args = _with_run_config(uri, run_id, args)
    where = ["--tracking.uri", uri, "--tracking.experiment", run.experiment, "--tracking.run_id", run_id]
    return [*args, "--ckpt_path", str(checkpoint), *where], run.params


def _with_run_config(uri: str, run_id: str, args: list[str]) -> list[str]:
    """``args`` with the run's own config.yaml first, unless they give a --config."""
    if has_option(args, "--config"):
        return args
    config = config_of(uri, run_id, CONFIG_ARTIFACT)
    if config is None:
        raise UserError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact: give its config with --config")
    return ["--config", str(config), *args]


def _refusal(run_id: str, status: str, tags: dict[str, str]) -> str:
    """Why run ``run_id`` cannot be resumed now, or ""."""
    if tags.get(KIND_TAG) == "sweep":
        return f"run {run_id} is a sweep's parent run: resume it with lit-d2l ablate SPEC"
    if tags.get(KIND_TAG) == "cross-validation":
        return f"run {run_id} is a cross-validation's parent run: run the same lit-d2l cv command again"
    if status == "FINISHED":
        return f"run {run_id} is already FINISHED: nothing to resume; start a new fit instead"
    if status == "RUNNING":
        owner = Owner.parse(tags.get(OWNER_TAG, ""))
        who = owner.describe() if owner else tags.get(OWNER_TAG) or "an unknown process"
        return f"run {run_id} is still running ({who}); stop it first (SIGTERM saves a checkpoint), then resume"
    # A stopped fold or arm may keep its stop's checkpoint, but its sweep fits it again (each FINISHED once).
    parent = tags.get(PARENT_TAG)
    if parent and "fold" in tags:
        return f"run {run_id} is a fold of cross-validation run {parent}: run the same lit-d2l cv command again"
    if parent and "arm" in tags:
        return f"run {run_id} is an arm of sweep run {parent}: run lit-d2l ablate with its spec again to finish it"
    return ""


def latest_checkpoint(directory: str | None) -> Path | None:
    """The newest ``*.ckpt`` in ``directory`` (an interrupt's checkpoint, else the last epoch's)."""
    if not directory or not Path(directory).is_dir():
        return None
    # An interrupt's checkpoint wins a tie with an epoch's saved within one tick of the file system's clock.
    checkpoints = sorted(
        Path(directory).glob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns, p.name.startswith(STOP_PREFIX))
    )
    return checkpoints[-1] if checkpoints else None


def check_same_settings(config: dict[str, Any], recorded: dict[str, str], evaluated: bool = False) -> None:
    """Refuse a resume (or, ``evaluated``, a ``validate``/``test --run``) whose model, data, seed or optimizer
    settings differ from what the run recorded."""
    changed = [
        f"{key} was {recorded[key]}, now {value}"
        for key, value in flatten(config_params(config)).items()
        if key.split(".")[0] in FIXED_SECTIONS and key in recorded and recorded[key] != param_text(value)
    ]
    if not changed:
        return
    settings = "; ".join(changed[:3])
    if evaluated:
        raise ConfigError(
            f"a run evaluated with --run keeps its settings: {settings} (drop those overrides, or give "
            "--ckpt_path FILE with --config FILE to evaluate its weights in a new run of those settings)"
        )
    raise ConfigError(
        f"a resumed run must keep its settings: {settings} (drop those overrides, or start a new run with lit-d2l fit)"
    )
