"""``lit-d2l plot-activations``: write the activation figure, and optionally log it to MLflow."""

from __future__ import annotations

import argparse
import os
import secrets

from lit_d2l.errors import UserError

ARTIFACT = "activations.png"


def plot_activations_command(args: argparse.Namespace, rest: list[str]) -> int:
    # The names are torch modules: checked after the arguments, so that --help needs no torch.
    from lit_d2l.models.activations import CONCISE
    from lit_d2l.models.figures import plot_activations
    from lit_d2l.tracking import TrackingLogger
    from lit_d2l.tracking.logger import closing

    unknown = [name for name in args.names if name not in CONCISE]
    if unknown:
        raise UserError(f"argument --names: invalid choice: {unknown[0]!r} (choose from {', '.join(sorted(CONCISE))})")
    figure = plot_activations(args.names)
    # Written beside the target and renamed, so a failure never leaves half a PNG. Created by savefig like
    # any new file (0666 less the umask): a mkstemp file would stay 0600 after the rename.
    partial = args.out.parent / f".{args.out.name}.{secrets.token_hex(8)}.part"
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(partial, dpi=120, format="png")
        os.replace(partial, args.out)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write it ({exc.strerror or exc}); give another file") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {args.out}")
    if args.log:
        logger = TrackingLogger(args.experiment, tracking_uri=args.tracking_uri, run_name="activations")
        with closing(logger):
            logger.log_figure(figure, ARTIFACT)
        print(f"logged {ARTIFACT} to MLflow run {logger.run_id}")
    return 0
