"""Every ``lit-d2l`` command and its options, in one argparse parser that names each handler and writes their help.

A run's own settings (``--config``, ``--model``, ``--data``, ``--trainer.*``, ``--tracking.*``) belong to
LightningCLI: ``fit``, ``validate``, ``test`` and ``cv`` hand whatever this parser does not know on to it, untouched
(``graph`` reads ``--config`` itself and hands on the rest). Each command's code is imported only when it runs
(``HANDLERS``), so help and a bad option answer without importing torch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

import lit_d2l
from lit_d2l.errors import UserError
from lit_d2l.fit import catalog
from lit_d2l.sweeps.ray_backend import add_backend_options
from lit_d2l.sweeps.spec import MAX_RUNS, PACK_MODES


def out_folder(text: str) -> Path:
    """``--out`` as a folder to write into: one that exists, or that can be made under a folder this process may
    write to (a file there, or a folder it cannot write, is refused before any work)."""
    path = Path(text)
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is a file, not a folder; give a folder to write into")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not writable; give another folder")
    return path


def png_file(text: str) -> Path:
    """``--out`` as the PNG file to write: a name ending in .png (it is replaced if there) in a folder as
    :func:`out_folder` takes one."""
    path = Path(text)
    if path.suffix.lower() != ".png" or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the figure is a PNG file; give a file name ending in .png")
    out_folder(str(path.parent))
    return path


#: Where each command's code is, as ``module:function(args, rest)``: imported when the command runs.
HANDLERS = {
    "fit": "lit_d2l.fit.run:lightning_command",
    "validate": "lit_d2l.fit.run:lightning_command",
    "test": "lit_d2l.fit.run:lightning_command",
    "cv": "lit_d2l.cli.cv:cv_command",
    "ablate": "lit_d2l.cli.ablate:ablate_command",
    "report": "lit_d2l.cli.ablate:report_command",
    "runs": "lit_d2l.cli.runs:runs_command",
    "ui": "lit_d2l.cli.ui:serve",
    "plot-activations": "lit_d2l.cli.plots:plot_activations_command",
    "graph": "lit_d2l.cli.graph:graph_command",
}
#: Commands whose other options are a run's settings, handed on to LightningCLI.
TAKES_RUN_SETTINGS = ("fit", "validate", "test", "cv", "graph")
#: Commands that go on where they stopped when run again: a stop names the command itself as the way on.
RESUMED_BY_RERUN = ("cv", "ablate")
#: Commands whose help is the short text of :mod:`lit_d2l.cli.usage`: their options are LightningCLI's.
LIGHTNING_HELP = ("fit", "validate", "test")

_STORE = "default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db"


class CommandParser(argparse.ArgumentParser):
    """argparse, with a bad option said in lit-d2l's one line (``lit-d2l: error: ...``, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """The store a command reads or writes, spelled as a run's setting (``--tracking.uri``) or ``--tracking-uri``."""
    parser.add_argument(
        "--tracking-uri", "--tracking.uri", dest="tracking_uri", metavar="URI", default=None, help=_STORE
    )


def parser() -> CommandParser:
    """The parser of every command (cheap: no command's code is imported)."""
    top = CommandParser(
        prog="lit-d2l",
        description="Dive into Deep Learning's models and studies on PyTorch Lightning, tracked in MLflow.",
        epilog="\n\n".join(
            [
                "lit-d2l COMMAND --help: that command's options.",
                catalog.listing("models (--model NAME)", catalog.MODELS),
                catalog.listing("DataModules (--data NAME)", catalog.DATAMODULES),
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    top.add_argument("--version", action="version", version=f"lit-d2l {lit_d2l.__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=CommandParser)

    def command(name: str, summary: str, **kwargs: object) -> CommandParser:
        sub = commands.add_parser(name, help=summary, description=summary, allow_abbrev=False, **kwargs)
        sub.set_defaults(handler=HANDLERS[name])
        return sub

    # Their help is lit-d2l's short text of LightningCLI's options (lit_d2l.cli.usage), not argparse's.
    fit = command("fit", "train a model (lit-d2l fit --help: its options, models and DataModules)", add_help=False)
    fit.add_argument("--resume", metavar="RUN_ID", help="continue that interrupted fit, in its own MLflow run")
    for name, where in (("validate", "validation"), ("test", "test")):
        summary = f"evaluate a fit's weights on the {where} split (--run RUN_ID or --ckpt_path FILE)"
        evaluate = command(name, summary, add_help=False)
        evaluate.add_argument("--run", metavar="RUN_ID", help="that fit's newest checkpoint, recorded in its run")

    cv = command(
        "cv",
        "K-fold cross-validation: K fits as child runs of one MLflow parent run",
        epilog="Every other option is a run setting, as for lit-d2l fit (lit-d2l fit --help lists them). The same "
        "command run again (after a stop, a crash) resumes the parent run: FINISHED folds are kept.",
    )
    cv.add_argument("--folds", metavar="K", type=int, default=5, help="how many folds (default 5)")
    cv.add_argument("--fresh", action="store_true", help="a new parent run even if this cross-validation ran before")
    add_backend_options(cv)

    ablate = command(
        "ablate",
        "run an ablation sweep: every arm x seed as a child of one MLflow parent run",
        epilog="The runs' settings come from the spec (its base config and overrides), not from this command line.",
    )
    ablate.add_argument("spec", help="sweep spec YAML, e.g. experiments/ablations/overfitting.yaml")
    ablate.add_argument("--dry-run", action="store_true", help="list the arms and packs; run nothing")
    ablate.add_argument("--resume", action="store_true", help="resume the sweep (the default when it exists)")
    ablate.add_argument("--fresh", action="store_true", help="start a new parent run even if the sweep exists")
    add_store_option(ablate)
    ablate.add_argument(
        "--no-report", action="store_true", help="skip the report and its verdict (lit-d2l report SWEEP writes them)"
    )
    ablate.add_argument(
        "--pack",
        choices=PACK_MODES,
        default="auto",
        help="auto: arms differing only in seed, lr, momentum, weight decay, L2, dropout or init train side by side"
        " in one vectorized fit, each still its own MLflow run; off: every arm x seed alone (default: auto)",
    )
    ablate.add_argument(
        "--pack-size", metavar="N", type=int, default=0, help="at most N runs per pack (default 0: memory decides)"
    )
    ablate.add_argument(
        "--max-runs",
        metavar="N",
        type=int,
        default=MAX_RUNS,
        help=f"refuse a spec of more than N arm x seed runs, counted before any arm is made (default {MAX_RUNS:,})",
    )
    add_backend_options(ablate)

    report = command("report", "HTML and markdown report of a sweep (tables, figures), logged on its parent run")
    report.add_argument(
        "sweep", help="sweep id (printed by lit-d2l ablate), its spec file (SPEC.yaml) or name, or parent run id"
    )
    report.add_argument("--out", type=out_folder, help="folder to write (default reports/<sweep id>)")
    report.add_argument(
        "--metrics", nargs="+", metavar="METRIC", help="summarise and rank on these (default: the spec's metrics:)"
    )
    add_store_option(report)
    report.add_argument("--select", metavar="METRIC", help="name the arm with the best mean over seeds of METRIC")
    report.add_argument("--mode", choices=("min", "max"), help="better METRIC is lower or higher (default: by name)")
    report.add_argument("--test", action="store_true", help="with --select: test that arm once, on the parent run")
    report.add_argument(
        "--register", metavar="NAME", help="with --select --test: put the tested arm's model in the Model Registry"
    )

    runs = command("runs", "the newest runs and their results; --stale: those closed because their process was gone")
    runs.add_argument("--stale", action="store_true", help="only runs closed because their process was gone")
    runs.add_argument("--experiment", default=None, help="only this experiment")
    runs.add_argument(
        "--limit", type=int, default=30, help="how many runs (default 30), each child under its parent run"
    )
    add_store_option(runs)

    ui = command("ui", "open the MLflow dashboard on this machine's store")
    ui.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add_store_option(ui)

    plots = command("plot-activations", "activation functions and their derivatives over [-8, 8] as a PNG")
    plots.add_argument(
        "--out", type=png_file, default=Path("activations.png"), help="PNG to write (default: %(default)s)"
    )
    plots.add_argument(
        "--names", nargs="+", default=["relu", "sigmoid", "tanh"], help="activations (default: relu sigmoid tanh)"
    )
    plots.add_argument("--log", action="store_true", help="also log the figure to an MLflow run")
    plots.add_argument("--experiment", default="figures", help="MLflow experiment for --log")
    add_store_option(plots)

    graph = command(
        "graph",
        "the computation graph of J = L + s for one training step, as graph.svg and graph.png",
        epilog="Nothing is recorded in MLflow. Other options are run settings, as for lit-d2l fit (--model.l2 0.1).",
    )
    graph.add_argument(
        "-c", "--config", metavar="FILE", required=True, action="append", help="a lit-d2l fit config (YAML)"
    )
    graph.add_argument("--out", type=out_folder, default=Path("."), help="folder to write to (default: here)")
    return top
