"""``lit-d2l cv``: its options, the K-fold run (:mod:`lit_d2l.sweeps.crossval`) and the summary it prints."""

from __future__ import annotations

import argparse

from lit_d2l.errors import UserError
from lit_d2l.sweeps.crossval import cross_validate, is_rank_zero, summary_lines
from lit_d2l.tracking.store import dashboard_hint


def cv_command(args: argparse.Namespace, rest: list[str]) -> int:
    named = {arg.split("=", 1)[0].split(".", 1)[0] for arg in rest}
    if not {"-c", "--config"} & named and not {"--model", "--data"} <= named:
        raise UserError("cv folds a run's settings: give --config FILE (or --model NAME --data NAME)")
    result = cross_validate(
        rest, args.folds, backend=args.backend, address=args.address, fresh=args.fresh, workers=args.workers
    )
    if not is_rank_zero():  # another DDP process, which reran this command: rank 0 reports
        return 0
    for line in summary_lines(result.summary, len(result.folds)):
        print(line)
    hint = dashboard_hint(result.tracking_uri)
    print(f"{result.totals}; MLflow parent run {result.parent_run_id}, view it with: {hint}")
    return 0
