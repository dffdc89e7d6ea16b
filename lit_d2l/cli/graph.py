"""``lit-d2l graph --config X.yaml``: draw the objective's computation graph of a config's model (D2L 5.3.2)."""

from __future__ import annotations

import argparse

from lit_d2l.errors import UserError
from lit_d2l.processes.quiet import lightning_info_off

#: One training step, recorded nowhere: the graph needs a real batch of the config's data, nothing more.
ONE_STEP = [
    *("--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"),
    *("--trainer.logger", "false", "--trainer.enable_checkpointing", "false"),
    *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
    *("--log_graph", "false", "--test_after_fit", "false"),
]


def graph_command(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_d2l.callbacks.graph import ComputationGraphArtifact  # torch and Lightning: after the arguments
    from lit_d2l.fit.run import build

    configs = [arg for path in args.config for arg in ("--config", path)]
    drawer = ComputationGraphArtifact(out_dir=args.out)
    with lightning_info_off():  # no banner, no "max_steps=1 reached"
        cli = build("fit", [*configs, *overrides, *ONE_STEP], callbacks=[drawer])
        if cli is None:
            return 0
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        except OSError as exc:
            if not str(exc.filename or "").startswith(str(args.out)):
                raise
            raise UserError(
                f"--out {args.out}: cannot write there ({exc.strerror or exc}); give another folder"
            ) from None
    if drawer.graph is None:
        raise UserError(f"{type(cli.model).__name__} is not a lit-d2l model (D2LModule): it has no objective to draw")
    print("\n".join(drawer.graph.describe()))
    print(f"wrote {', '.join(map(str, drawer.files))}")
    return 0
