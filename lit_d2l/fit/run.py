"""One configured run: config (YAML + dotted overrides) → DataModule, model, Trainer → MLflow run.

``build`` then ``execute`` (together ``run_configured``) build and run one fit, validate or test:
``lit-d2l fit``, each fold of ``lit-d2l cv`` and each arm of a sweep that trains alone. A packed arm is
built from the same parse (:mod:`lit_d2l.fit.parse`) and trained in a pack (:mod:`lit_d2l.sweeps.packs`).
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

# Imported for their classes: jsonargparse resolves a short class name (--model MLP, --data.help
# FashionMNIST) among the subclasses imported so far.
import lit_d2l.data
import lit_d2l.models  # noqa: F401
from lit_d2l.callbacks import (
    ComputationGraphArtifact,
    Diverged,
    GracefulStop,
    Heartbeat,
    LogModel,
    MemoryMeter,
    StoredFirst,
)
from lit_d2l.errors import ConfigError, NoTestSplit, TrackingError, UserError
from lit_d2l.fit.catalog import CKPT_PATH_HELP, LOG_GRAPH_HELP, TEST_AFTER_FIT_HELP
from lit_d2l.fit.checks import (
    argument_error_line,
    as_dict,
    check_settings,
    class_first,
    has_option,
    misconfiguration_line,
    not_utf8_config,
    user_error_in,
    yaml_file_named,
)
from lit_d2l.fit.resume import check_same_settings, evaluate_args, latest_checkpoint, resume_args
from lit_d2l.models import D2LModule, built, check_distributable
from lit_d2l.processes import interrupts
from lit_d2l.tracking import TrackingLogger
from lit_d2l.tracking.logger import EndStatusOnException, run_status_for
from lit_d2l.tracking.run_record import RunRecorder
from lit_d2l.tracking.settings import TrackingSettings
from lit_d2l.tracking.store import dashboard_hint, store_option

SUBCOMMANDS = ("fit", "validate", "test")


@dataclass
class RunResult:
    """What a finished run produced: its MLflow id and status, and the final metrics."""

    run_id: str | None
    status: str | None
    tracking_uri: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    learned: dict[str, str] = field(default_factory=dict)
    is_global_zero: bool = True
    outcome: str = "finished"  # or "diverged"
    diverged_at_step: int | None = None
    model_uri: str | None = None  # runs:/<run id>/model when the trained model was logged
    registered: str | None = None  # "<name> version <n>" when it was registered


class D2LCLI(LightningCLI):
    """LightningCLI with a ``tracking`` section, an MLflow logger by default and fail-fast checks.

    ``--optimizer`` and ``--lr_scheduler`` are LightningCLI's, handed to the model (see
    :meth:`~lit_d2l.models.D2LModule.configure_optimizers`) rather than built by the CLI before the
    model's layers exist, so they get the model's parameter groups (no weight decay on biases).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        options = {"instantiate": False, "fail_untyped": False, "required": False}
        parser.add_subclass_arguments(torch.optim.Optimizer, "optimizer", skip={"params"}, **options)
        # Every torch scheduler, ReduceLROnPlateau included, is an LRScheduler.
        parser.add_subclass_arguments(
            torch.optim.lr_scheduler.LRScheduler, "lr_scheduler", skip={"optimizer"}, **options
        )
        parser.add_class_arguments(TrackingSettings, "tracking")
        parser.add_argument("--ckpt_path", type=str | None, default=None, help=CKPT_PATH_HELP)
        parser.add_argument("--test_after_fit", type=bool, default=False, help=TEST_AFTER_FIT_HELP)
        parser.add_argument("--log_graph", type=bool, default=False, help=LOG_GRAPH_HELP)

    def before_instantiate_classes(self) -> None:
        self.logger: TrackingLogger | None = None
        check_settings(self.config)

    def after_instantiate_classes(self) -> None:
        optimizer, scheduler = self.config_init.get("optimizer"), self.config_init.get("lr_scheduler")
        if optimizer is None and scheduler is None:
            return
        use_optimizer = getattr(self.model, "use_optimizer", None)
        if not callable(use_optimizer):
            raise ConfigError(
                f"{type(self.model).__name__} takes no --optimizer / --lr_scheduler: give it a configure_optimizers"
            )
        use_optimizer(as_dict(optimizer), as_dict(scheduler))

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        # A stop signal ends the step and saves a checkpoint first; an exception's run ends as that exception means.
        # StoredFirst: a checkpoint file appears once the values logged before it are stored; MemoryMeter:
        # memory/saved_for_backward_bytes, from a side pass at step 0.
        extra: list[L.Callback] = [GracefulStop(), EndStatusOnException(), StoredFirst(), MemoryMeter()]
        if self.config_init.get("log_graph", False):
            extra.append(ComputationGraphArtifact())
        logged = self.config_init.trainer.get("logger") is not False  # the monitor refuses a Trainer without one
        if self.config_init.get("lr_scheduler") is not None and logged:  # its learning rate, logged every epoch
            extra.append(LearningRateMonitor(logging_interval="epoch"))
        # Given as a keyword, callbacks replace the config's trainer.callbacks: keep those too.
        configured = self.config_init.trainer.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        kwargs["callbacks"] = [*configured, *extra]
        if not sys.stdout.isatty():  # a file or a pipe (a SLURM log, > out.txt)
            callers = self.trainer_defaults.get("callbacks") or []  # added by Lightning after this: seen, not added
            _lines_not_bar(self.config_init.trainer.get("enable_progress_bar"), kwargs, callers)
        if self.config_init.trainer.get("logger") in (None, True):
            settings = self.config_init.tracking
            self.logger = TrackingLogger(
                experiment_name=settings.experiment,
                tracking_uri=settings.uri,
                run_name=settings.run_name or default_run_name(self.config.get("config"), self.model),
                tags=settings.tags,
                run_id=settings.run_id,
                system_metrics=settings.system_metrics,
                server_timeout_s=settings.server_timeout_s,
            )
            kwargs["logger"] = self.logger
            if settings.log_model or settings.register_model:  # the trained model, as the run's MLflow model
                kwargs["callbacks"].append(LogModel(register_as=settings.register_model))
        return super().instantiate_trainer(**kwargs)


def _lines_not_bar(enable_progress_bar: bool | None, kwargs: dict[str, Any], callers: list[L.Callback]) -> None:
    """Where stdout is a file or a pipe: no progress bar, whose redraws at every step would fill it, unless one is
    asked for (``enable_progress_bar: true``, a progress bar among the callbacks); and, where none is drawn, a
    :class:`~lit_d2l.callbacks.Heartbeat` line every 30 s instead (unless the caller has one: a sweep's arm)."""
    callbacks = [*kwargs["callbacks"], *callers]
    if enable_progress_bar is None and not any(isinstance(callback, ProgressBar) for callback in callbacks):
        kwargs["enable_progress_bar"] = enable_progress_bar = False
    if enable_progress_bar is False and not any(isinstance(callback, Heartbeat) for callback in callbacks):
        kwargs["callbacks"].append(Heartbeat("training", show=("train/loss", "val/loss")))


def default_run_name(config_files: Any, model: Any) -> str:
    """``<config>-<Model>-<MMDD-HHMMSS>-<4 hex>``: says what ran, and never comes from a seeded generator
    (MLflow's own names do, so every run with one seed got the same name)."""
    files = list(config_files or [])
    stem = Path(str(files[-1])).stem if files else "run"
    return f"{stem}-{type(model).__name__}-{time.strftime('%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _is_help(args: list[str]) -> bool:
    return any(arg in ("-h", "--help", "--print_config") or arg.startswith("--print_config=") for arg in args)


def lightning_command(options: Any, args: list[str]) -> int:
    """``lit-d2l fit|validate|test``, as :mod:`lit_d2l.cli.commands` parsed it: ``args`` are the run's settings."""
    return run_lightning(options.command, args, getattr(options, "resume", None), getattr(options, "run", None))


def run_lightning(command: str, args: list[str], run_id: str | None = None, trained_in: str | None = None) -> int:
    """Run ``command`` (fit, validate, test) with the settings ``args``; ``run_id``: the fit to resume,
    ``trained_in``: the fit whose weights validate or test. Print the outcome, return the exit status."""
    recorded: dict[str, str] | None = None
    if (run_id or trained_in) and has_option(args, "--ckpt_path"):
        given = "--resume" if run_id else "--run"
        raise ConfigError(f"{given} takes the run's own newest checkpoint: drop --ckpt_path")
    if run_id is not None:
        if command != "fit":
            raise ConfigError(f"--resume continues a fit: use lit-d2l fit --resume {run_id}")
        args, recorded = resume_args(run_id, args)
    elif trained_in is not None:
        if command == "fit":
            raise ConfigError(
                f"--run RUN_ID names the weights to validate or test; to continue a fit: --resume {trained_in}"
            )
        args, recorded = evaluate_args(trained_in, args)
    elif command != "fit" and not has_option(args, "--ckpt_path") and not _is_help(args):
        raise ConfigError(
            f"lit-d2l {command} needs trained weights: give --run RUN_ID (the newest checkpoint of that fit) "
            "or --ckpt_path FILE; without them it would evaluate an untrained model"
        )
    cli = build(command, args)
    if cli is None:
        return 0
    if recorded is not None:
        check_same_settings(cli.config.as_dict(), recorded, evaluated=trained_in is not None)
    result = execute(cli, command)
    if not result.is_global_zero:  # another DDP rank
        return 0
    if result.outcome == "diverged":
        print(f"training diverged at step {result.diverged_at_step}; the run is tagged outcome=diverged")
    for key, value in result.learned.items():
        print(f"{key} = {value}")
    shown = {k: v for k, v in result.metrics.items() if k.startswith(("val/", "test/"))}
    if shown:
        print("final " + ", ".join(f"{k} = {v:.4g}" for k, v in sorted(shown.items())))
    if command == "fit" and not any(key.startswith("val/") for key in result.metrics):
        print(_no_validation(cli.trainer) or "no val/ metric: this fit ran no validation")
    if result.model_uri:
        registered = f"; registered as {result.registered}" if result.registered else ""
        print(f"model: {result.model_uri}{registered}")
    if result.run_id:
        where = f"MLflow run {result.run_id} ({result.status}) in {result.tracking_uri}"
        print(f"{where}; view it with: {dashboard_hint(result.tracking_uri)}")
    return 0


def _no_validation(trainer: L.Trainer) -> str | None:
    """Why a fit logged no ``val/`` metric, where the validation cadence says: printed, not left to find in MLflow."""
    every, epochs = trainer.check_val_every_n_epoch, trainer.current_epoch
    if isinstance(every, int) and every > epochs:
        return (
            f"no val/ metric: validation runs every {every} epochs (trainer.check_val_every_n_epoch) and this fit "
            f"trained {epochs}; lower it, or train longer"
        )
    return None


def run_configured(command: str, args: list[str], callbacks: list[L.Callback] | None = None) -> RunResult | None:
    """Build everything from ``args`` (config files and dotted overrides) and run ``command``, with ``callbacks``
    added to the Trainer. Returns None when only help or the config was printed."""
    cli = build(command, args, callbacks)
    return None if cli is None else execute(cli, command)


def build(command: str, args: list[str], callbacks: list[L.Callback] | None = None) -> D2LCLI | None:
    """Parse and instantiate (DataModule, model, Trainer and logger) without running anything."""
    if command not in SUBCOMMANDS:
        raise ConfigError(f"unknown command {command!r}; choose one of: {', '.join(SUBCOMMANDS)}")
    try:
        with config_errors(command, args), warnings.catch_warnings():
            # We pass args on purpose: sys.argv still holds the subcommand.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = D2LCLI(
                save_config_callback=RunRecorder,
                parser_kwargs=parser_kwargs(command),
                # The RunRecorder logs the whole resolved config; Lightning's own hparams would repeat it.
                trainer_defaults={
                    "enable_autolog_hparams": False,
                    "callbacks": list(callbacks or []),
                },
                args=args,
                run=False,
            )
    except SystemExit as exc:
        if exc.code in (0, None):  # --help / --print_config
            return None
        raise
    return cli


def parser_kwargs(command: str) -> dict[str, Any]:
    """LightningCLI's parser for ``lit-d2l COMMAND``: errors raised (said in one line), not printed with the usage;
    an option is named in full (argparse would take ``--trainer.max_epoch`` for ``--trainer.max_epochs``)."""
    return {"exit_on_error": False, "allow_abbrev": False, "prog": f"lit-d2l {command}"}


@contextmanager
def config_errors(command: str, args: list[str]) -> Iterator[None]:
    """Bad settings found while parsing or building ``args``, as one-line :class:`ConfigError` s."""
    try:
        yield
    except (UserError, SystemExit):
        raise
    except UnicodeDecodeError as exc:  # jsonargparse reads config files as UTF-8
        raise not_utf8_config(args, exc) from None
    except MisconfigurationException as exc:  # Lightning refusing a setting, e.g. trainer.max_epochs -5
        raise ConfigError(misconfiguration_line(exc)) from None
    except ArgumentError as exc:
        raise ConfigError(class_first(argument_error_line(yaml_file_named(str(exc), args), command), args)) from None
    except Exception as exc:
        # A model or DataModule rejecting its settings surfaces wrapped by jsonargparse.
        cause = user_error_in(exc)
        if cause is None:
            raise
        raise cause from None


def execute(cli: D2LCLI, command: str) -> RunResult:
    """Run ``command`` on what :func:`build` made; the MLflow run never stays RUNNING."""
    trainer, model, data, logger = cli.trainer, cli.model, cli.datamodule, cli.logger
    metrics: dict[str, float] = {}
    diverged: Diverged | None = None
    checkpoint = {"ckpt_path": cli.config.ckpt_path, "weights_only": True}
    if command == "fit" and cli.config.test_after_fit and getattr(data, "num_test", None) == 0:
        raise NoTestSplit()
    if trainer.world_size > 1:
        _before_processes_start(model, data, trainer.world_size, logger)
    try:
        if command == "fit":
            if logger is not None:
                logger.keep_open = bool(cli.config.test_after_fit)  # the run ends once tested, below
            trainer.fit(model, datamodule=data, **checkpoint)
            interrupts.raise_if_requested()
            metrics |= _scalars(trainer.callback_metrics)  # testing replaces them
            if cli.config.test_after_fit:
                trainer.test(model, datamodule=data)
        elif command == "validate":
            trainer.validate(model, datamodule=data, **checkpoint)
        else:
            trainer.test(model, datamodule=data, **checkpoint)
    except Diverged as exc:  # a result, recorded by the guard's tags; the run ended FINISHED
        diverged = exc
    except (interrupts.Interrupted, SIGTERMException) as exc:
        stop = exc if isinstance(exc, interrupts.Interrupted) else _interrupted(trainer)
        if stop.checkpoint is None and trainer.checkpoint_callback is not None:  # stopped after training, say
            saved = latest_checkpoint(trainer.checkpoint_callback.dirpath)  # what fit --resume goes on from
            stop.checkpoint = str(saved) if saved is not None else None
        if logger is not None:
            logger.end("KILLED")
            stop.run_id, stop.run_status, stop.reason = logger.version, logger.status or "KILLED", logger.stop_reason
            stop.store_option = store_option(logger.tracking_uri, "--tracking.uri")
        raise stop from None
    except (UserError, MisconfigurationException) as exc:  # bad input found late: record nothing
        if logger is not None:
            logger.abandon()
        if isinstance(exc, MisconfigurationException):
            raise ConfigError(misconfiguration_line(exc)) from None
        raise
    except BaseException as exc:
        if logger is not None:  # errors outside Lightning's own handling must not leave it RUNNING
            logger.end(run_status_for(exc))
        if isinstance(exc, RuntimeError) and cli.config.ckpt_path and "loading state_dict" in str(exc):
            if logger is not None:
                logger.abandon()
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"--ckpt_path {cli.config.ckpt_path} does not fit this model ({first.rstrip(':')}): "
                "give a checkpoint saved with the same model and shapes"
            ) from None
        raise
    if logger is not None:  # ends a run this process created for spawned workers; else already ended
        logger.end("FINISHED")
        if (unstored := logger.unstored()) is not None:  # a tracking server away past its limit
            raise TrackingError(unstored)
    # A resumed fit that had trained (stopped in its test, say) validates no more: the run's stored values stand.
    stored = {k: v for k, v in (logger.stored_metrics if logger else {}).items() if k.startswith(("val/", "test/"))}
    result = _result(cli, stored | metrics | _scalars(trainer.callback_metrics))
    if diverged is not None:
        result.outcome, result.diverged_at_step = "diverged", diverged.step
    return result


def _before_processes_start(model: Any, data: Any, world_size: int, logger: TrackingLogger | None) -> None:
    """Check the global batch divides among the processes, build the model here and create the run.

    Under ``ddp_spawn`` the workers get copies of this process's model and logger: the layers must
    exist here for the trained weights to come back (Lightning loads them non-strictly), and the
    run must exist for the workers to log into it rather than each make its own.
    """
    if hasattr(data, "rank_batch_size"):
        data.rank_batch_size(world_size)  # one line before anything is recorded, not one per worker
    check_distributable(model)
    if isinstance(model, D2LModule):
        built(model, data)
    if logger is not None:
        logger.start()


def _interrupted(trainer: L.Trainer) -> interrupts.Interrupted:
    """Lightning's SIGTERM stop, as lit-d2l's :class:`Interrupted` with the signal and the checkpoint saved."""
    stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)
    checkpoint = str(stop.checkpoint) if stop is not None and stop.checkpoint else None
    return interrupts.Interrupted(interrupts.take_requested() or signal.SIGTERM, trainer.global_step, checkpoint)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if value.numel() == 1}


def _result(cli: D2LCLI, metrics: dict[str, float]) -> RunResult:
    logger = cli.logger
    return RunResult(
        run_id=logger.version if logger else None,
        status=logger.status if logger else None,
        tracking_uri=logger.tracking_uri if logger else None,
        metrics=metrics,
        learned=cli.model.describe() if hasattr(cli.model, "describe") else {},
        is_global_zero=cli.trainer.is_global_zero,
        model_uri=logger.model_uri if logger else None,
        registered=logger.registered if logger else None,
    )
