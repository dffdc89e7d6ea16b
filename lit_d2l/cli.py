"""The ``lit-d2l`` command: fit / validate / test through LightningCLI, plus ``ui``.

Every run goes to MLflow through :class:`~lit_d2l.tracking.TrackingLogger`; errors a user can
fix end in one line on stderr and exit status 2, with no run left RUNNING.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from lit_d2l.errors import UserError
from lit_d2l.noise import quiet_third_party

USAGE = """usage: lit-d2l {fit,validate,test} --config CONFIG.yaml [--section.key VALUE ...]
       lit-d2l cv --config CONFIG.yaml --folds K [--section.key VALUE ...]
       lit-d2l ablate SPEC.yaml [--dry-run] [--workers N] [--resume | --fresh]
       lit-d2l report SWEEP [--out DIR]
       lit-d2l ui [--port PORT] [--tracking-uri URI]
       lit-d2l plot-activations [--out FILE.png] [--names relu sigmoid tanh] [--log]

  fit        train a model (add --print_config to see every setting)
  validate   evaluate on the validation split
  test       evaluate on the test split
  cv         K-fold cross-validation: K fits as child runs of one MLflow parent run
  ablate     run an ablation sweep: every arm x seed as a child of one MLflow parent run
  report     markdown table and plots of a sweep, logged on its parent run
  ui         open the MLflow dashboard on this machine's store
  plot-activations  activation functions and their derivatives over [-8, 8] as a PNG
"""


COMMANDS = ("fit", "validate", "test", "cv", "ablate", "report", "ui", "plot-activations")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-d2l`` and ``python -m lit_d2l``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    quiet_third_party()
    try:
        code = run(argv)
    except UserError as exc:
        print(f"lit-d2l: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("lit-d2l: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:
        from lit_d2l.tracking.write_errors import storage_error

        error = storage_error(exc)
        if error is None:
            raise
        print(f"lit-d2l: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)


def run(argv: list[str]) -> int:
    """Run one command; return its exit status. Raises :class:`UserError` for bad input."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "ui":
        from lit_d2l.tracking.ui import serve

        return serve(rest)
    if command == "plot-activations":
        from lit_d2l.plots import plot_activations_command

        return plot_activations_command(rest)
    if command == "ablate":
        from lit_d2l.ablation.commands import ablate_command

        return ablate_command(rest)
    if command == "report":
        from lit_d2l.ablation.commands import report_command

        return report_command(rest)
    if command == "cv":
        from lit_d2l.crossval import main as cross_validate

        return cross_validate(rest)
    if command in ("fit", "validate", "test"):
        from lit_d2l.runner import run_lightning

        return run_lightning(argv)
    raise UserError(
        f"unknown command {command!r}; choose one of: fit, validate, test, cv, ablate, report, ui, plot-activations"
    )


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops a run like Ctrl-C does, so its MLflow run is closed as KILLED."""
    raise KeyboardInterrupt(f"signal {signum}")
