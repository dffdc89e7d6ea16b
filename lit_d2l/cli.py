"""The ``lit-d2l`` command: fit / validate / test through LightningCLI, plus ``ui``.

Every run goes to MLflow through :class:`~lit_d2l.tracking.TrackingLogger`; errors a user can
fix end in one line on stderr and exit status 2, with no run left RUNNING.
"""

from __future__ import annotations

import sys

from lit_d2l.errors import UserError
from lit_d2l.interrupts import Interrupted, stop_signals_handled
from lit_d2l.noise import quiet_third_party

USAGE = """usage: lit-d2l {fit,validate,test} --config CONFIG.yaml [--section.key VALUE ...]
       lit-d2l fit --resume RUN_ID [--section.key VALUE ...]
       lit-d2l cv --config CONFIG.yaml --folds K [--section.key VALUE ...]
       lit-d2l ablate SPEC.yaml [--dry-run] [--workers N] [--resume | --fresh]
       lit-d2l report SWEEP [--out DIR]
       lit-d2l runs [--stale] [--experiment NAME] [--limit N]
       lit-d2l ui [--port PORT] [--tracking-uri URI]
       lit-d2l plot-activations [--out FILE.png] [--names relu sigmoid tanh] [--log]
       lit-d2l graph --config CONFIG.yaml [--out DIR] [--section.key VALUE ...]

  fit        train a model (add --print_config to see every setting)
  validate   evaluate on the validation split
  test       evaluate on the test split
  cv         K-fold cross-validation: K fits as child runs of one MLflow parent run
  ablate     run an ablation sweep: every arm x seed as a child of one MLflow parent run
  report     markdown table and plots of a sweep, logged on its parent run
  runs       the newest runs; --stale: those closed because their process was gone
  ui         open the MLflow dashboard on this machine's store
  plot-activations  activation functions and their derivatives over [-8, 8] as a PNG
  graph      the computation graph of J = L + s for one training step, as graph.svg and graph.png
"""


COMMANDS = ("fit", "validate", "test", "cv", "ablate", "report", "runs", "ui", "plot-activations", "graph")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-d2l`` and ``python -m lit_d2l``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_third_party()
    try:
        with stop_signals_handled():
            code = run(argv)
    except UserError as exc:
        print(f"lit-d2l: error: {exc}", file=sys.stderr)
        code = 2
    except Interrupted as exc:
        print(f"lit-d2l: {exc}", file=sys.stderr)
        code = int(exc.code) if isinstance(exc.code, int) else 130
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
    if command == "runs":
        from lit_d2l.tracking.runs import runs_command

        return runs_command(rest)
    if command == "plot-activations":
        from lit_d2l.plots import plot_activations_command

        return plot_activations_command(rest)
    if command == "graph":
        from lit_d2l.graph.command import graph_command

        return graph_command(rest)
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
    raise UserError(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
