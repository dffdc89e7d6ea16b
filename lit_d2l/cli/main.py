"""The ``lit-d2l`` command: one entry point that dispatches every subcommand (fit, cv, ablate, runs, ui, ...).

Every run goes to MLflow through :class:`~lit_d2l.tracking.TrackingLogger`; errors a user can
fix end in one line on stderr and exit status 2, with no run left RUNNING.

Each command imports what it needs when it runs, after its help and its arguments are checked:
torch and Lightning take ~5 s to import, and help or a missing file should answer at once.
"""

from __future__ import annotations

import gc
import importlib
import os
import shlex
import sys
from pathlib import Path
from typing import TextIO

import yaml

from lit_d2l.cli.commands import HANDLERS, LIGHTNING_HELP, RESUMED_BY_RERUN, TAKES_RUN_SETTINGS, parser
from lit_d2l.cli.usage import command_help, full_help_args, wants_help
from lit_d2l.errors import ConfigError, UserError
from lit_d2l.processes.interrupts import Interrupted, stop_signals_handled
from lit_d2l.processes.quiet import quiet_third_party
from lit_d2l.processes.terminal import LineEnds, own_line
from lit_d2l.sweeps.spec import is_setting_key


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-d2l`` and ``python -m lit_d2l``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_third_party()
    stdout = sys.stdout
    sys.stdout = LineEnds(stdout)  # so that a final message starts on its own line, not after a progress bar
    try:
        with stop_signals_handled():
            code = run(argv)
        sys.stdout.flush()  # a reader that went away (``lit-d2l runs | head``) is found here, not at exit
    except BrokenPipeError:
        code = _reader_gone(stdout)
    except UserError as exc:
        code = _final(f"lit-d2l: error: {exc}", 2)
    except Interrupted as exc:
        code = int(exc.code) if isinstance(exc.code, int) else 130
        if not _other_rank():  # one line for a fit of several processes: rank 0's
            code = _final(f"lit-d2l: {exc}", code)
    except KeyboardInterrupt:
        code = _final("lit-d2l: interrupted", 130)
    except Exception as exc:
        from lit_d2l.tracking.write_errors import storage_error

        error = storage_error(exc)
        if error is None:
            raise
        code = _final(f"lit-d2l: error: {error}", 2)
    finally:
        sys.stdout = stdout
    # Every run is ended by now. The collector's passes over the objects of ~4,600 modules (torch, Lightning,
    # MLflow) at exit took 2-3 s on a busy 2-core machine, a stop included: skip them; atexit handlers still run.
    gc.freeze()
    sys.exit(code)


def _other_rank() -> bool:
    """Whether this process is a rank other than 0 of a fit of several (its launcher's environment says so)."""
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # torchrun's, Lightning's launcher's, SLURM's
    return any(os.environ.get(key, "0") not in ("", "0") for key in keys)


def _reader_gone(stdout: TextIO) -> int:
    """stdout's reader went away: end quietly with the status a Unix tool killed by SIGPIPE has (128 + 13).
    What is still buffered goes to /dev/null (Python would otherwise fail again writing it at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
    return 141


def _final(message: str, code: int) -> int:
    """Print the command's last line on stderr, on a line of its own; return ``code``."""
    own_line()
    print(message, file=sys.stderr)
    return code


def run(argv: list[str]) -> int:
    """Run one command; return its exit status. Raises :class:`UserError` for bad input."""
    if not argv or argv[0] in ("-h", "--help"):
        print(parser().format_help().rstrip())
        return 0 if argv else 2
    if argv[0] == "--version":
        parser().parse_args(argv[:1])  # its version action prints and exits 0
    command, rest = argv[0], argv[1:]
    if command not in HANDLERS:
        raise UserError(f"unknown command {command!r}; choose one of: {', '.join(HANDLERS)}")
    if command in TAKES_RUN_SETTINGS and not wants_help(rest):
        check_config_files(rest)
    if command in LIGHTNING_HELP and wants_help(rest):  # the short help, without importing Lightning
        full = full_help_args(rest)  # --help full: LightningCLI's own
        if full is None:
            print(command_help(command))
            return 0
        argv = [command, *full]
    args, unknown = parser().parse_known_args(argv)
    if unknown and command not in TAKES_RUN_SETTINGS:
        hint = f"see lit-d2l {command} --help"
        if command == "ablate" and any(is_setting_key(arg[2:].split("=")[0]) for arg in unknown):  # --optimizer
            hint = "a sweep's run settings go in its spec, under overrides: or grid:; see docs/ablations.md"
        raise UserError(f"unrecognized arguments: {' '.join(unknown)} ({hint})")
    module, _, function = args.handler.partition(":")
    try:
        return getattr(importlib.import_module(module), function)(args, unknown)
    except Interrupted as stop:
        if command in RESUMED_BY_RERUN:  # the way on is this command again, not fit --resume
            # without --fresh once its parent run exists: with it, the command would start yet another
            again = [arg for arg in argv[1:] if arg != "--fresh" or stop.recorded_run_id is None]
            stop.rerun = f"lit-d2l {command} {shlex.join(again)}"
        raise


def check_config_files(args: list[str]) -> None:
    """Refuse a ``--config`` / ``-c`` that is neither a file nor an inline YAML mapping, as LightningCLI would,
    but before Lightning is imported."""
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        else:
            continue
        if Path(value).exists() or _inline_mapping(value):
            continue
        raise ConfigError(
            f"config: File does not exist: {str(Path(value).absolute())!r} "
            "(give the path of a YAML config, e.g. experiments/linear_regression.yaml)"
        )


def _inline_mapping(value: str) -> bool:
    """jsonargparse also takes the config itself as the value: ``--config '{trainer: {max_epochs: 1}}'``."""
    try:
        return isinstance(yaml.safe_load(value), dict)
    except yaml.YAMLError:
        return False
