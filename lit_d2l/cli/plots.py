"""``lit-d2l plot-activations``: write the activation figure, and optionally log it to MLflow."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

ARTIFACT = "activations.png"


def plot_activations_command(argv: list[str]) -> int:
    description = "Plot activation functions and their derivatives over [-8, 8]."
    parser = argparse.ArgumentParser(prog="lit-d2l plot-activations", description=description)
    parser.add_argument("--out", type=Path, default=Path(ARTIFACT), help="PNG to write (default activations.png)")
    parser.add_argument(
        "--names",
        nargs="+",
        default=["relu", "sigmoid", "tanh"],
        help="activations, e.g. relu gelu (default: relu sigmoid tanh)",
    )
    parser.add_argument("--log", action="store_true", help="also log the figure to an MLflow run")
    parser.add_argument("--experiment", default="figures", help="MLflow experiment for --log")
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    # The names are torch modules: checked after the arguments, so that --help needs no torch.
    from lit_d2l.models.activations import CONCISE
    from lit_d2l.models.figures import plot_activations
    from lit_d2l.tracking import TrackingLogger
    from lit_d2l.tracking.logger import closing

    unknown = [name for name in args.names if name not in CONCISE]
    if unknown:
        parser.error(f"argument --names: invalid choice: {unknown[0]!r} (choose from {', '.join(sorted(CONCISE))})")
    figure = plot_activations(args.names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a failure never leaves half a PNG. Created by savefig like
    # any new file (0666 less the umask): a mkstemp file would stay 0600 after the rename.
    partial = args.out.parent / f".{args.out.name}.{secrets.token_hex(8)}.part"
    try:
        figure.savefig(partial, dpi=120, format="png")
        os.replace(partial, args.out)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {args.out}")
    if args.log:
        logger = TrackingLogger(args.experiment, tracking_uri=args.tracking_uri, run_name="activations")
        with closing(logger):
            logger.log_figure(figure, ARTIFACT)
        print(f"logged {ARTIFACT} to MLflow run {logger.run_id}")
    return 0
