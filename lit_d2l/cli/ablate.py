"""``lit-d2l ablate`` and ``lit-d2l report``: argument parsing and printing.

The arguments, the spec file and the sweep id are checked before the modules that train or draw are
imported (torch and Lightning take ~5 s to import): help and a bad argument answer at once.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from lit_d2l.errors import UserError
from lit_d2l.processes.terminal import clock_time
from lit_d2l.sweeps.progress import tally
from lit_d2l.sweeps.ray_backend import add_backend_options
from lit_d2l.sweeps.spec import MAX_RUNS, PACK_MODES, load_spec
from lit_d2l.tracking.settings import check_registered_name
from lit_d2l.tracking.store import dashboard_hint, resolve_tracking_uri, sqlite_path, store_option


def ablate_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-d2l ablate", description="Run an ablation sweep.")
    parser.add_argument("spec", help="sweep spec YAML, e.g. experiments/ablations/overfitting.yaml")
    parser.add_argument("--dry-run", action="store_true", help="list the arms; run nothing")
    parser.add_argument("--workers", type=int, default=1, help="arms run in N processes (one GPU each if any)")
    parser.add_argument("--resume", action="store_true", help="resume the sweep (the default when it exists)")
    parser.add_argument("--fresh", action="store_true", help="start a new parent run even if the sweep exists")
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db"
    )
    parser.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    parser.add_argument(
        "--pack",
        choices=PACK_MODES,
        default="auto",
        help="auto: arms differing only in seed, lr, momentum, weight decay, L2, dropout or init train side by side"
        " in one vectorized fit, each still its own MLflow run; off: every arm x seed alone (default: auto)",
    )
    parser.add_argument("--pack-size", type=int, default=0, help="at most N runs per pack (default 0: memory decides)")
    parser.add_argument(
        "--max-runs",
        type=int,
        default=MAX_RUNS,
        help=f"refuse a spec of more than N arm x seed runs, counted before any arm is made (default {MAX_RUNS:,})",
    )
    add_backend_options(parser)
    args = parser.parse_args(argv)
    if args.max_runs < 1:
        raise UserError(f"--max-runs must be >= 1, got {args.max_runs}")
    spec = load_spec(args.spec, max_runs=args.max_runs)
    if not args.dry_run:  # at once: checking the arms (and importing torch) takes seconds, training minutes
        seeds = f"{len(spec.seeds)} seed" + ("s" if len(spec.seeds) > 1 else "")
        runs = f"{len(spec.arms)} arms x {seeds} = {len(spec.pairs())} runs"
        print(f"sweep {spec.sweep_id}: {runs}; checking every arm's settings ...", flush=True)
    from lit_d2l.sweeps.dry_run import dry_run
    from lit_d2l.sweeps.engine import run_sweep
    from lit_d2l.sweeps.reports.report import build_report

    if args.dry_run:
        dry_run(spec, pack=args.pack, pack_size=args.pack_size, workers=args.workers)
        return 0
    start = time.monotonic()
    result = run_sweep(
        spec,
        workers=args.workers,
        fresh=args.fresh and not args.resume,
        tracking_uri=args.tracking_uri,
        pack=args.pack,
        pack_size=args.pack_size,
        backend=args.backend,
        address=args.address,
        echo=lambda line: print(line, flush=True),  # each line as it comes, also into a pipe or a log file
    )
    took = clock_time(time.monotonic() - start)
    if not args.no_report:
        path, found = build_report(result.parent_run_id, tracking_uri=args.tracking_uri)
        for line in found.terminal_lines():
            print(line)
        print(f"report: {path.with_suffix('.html')} (figures embedded; also {path.name})")
    counts = Counter(outcome.outcome for outcome in result.outcomes)
    before = f"; {result.skipped} done before" if result.skipped else ""
    print(f"sweep {result.sweep_id}: {len(result.outcomes)} arm runs in {took}: {tally(counts)}{before}")
    uri = resolve_tracking_uri(args.tracking_uri)
    print(
        f"sweep {result.sweep_id}: parent run {result.parent_run_id} ({result.status}); view it with: "
        f"lit-d2l report {result.sweep_id}{store_option(uri)} (report.html), or {dashboard_hint(uri)}"
    )
    return 1 if result.failed else 0


def report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-d2l report", description="Tables and plots of a sweep.")
    parser.add_argument("sweep", help="sweep id (printed by lit-d2l ablate) or parent run id")
    parser.add_argument("--out", default=None, help="folder to write (default reports/<sweep id>)")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--select", metavar="METRIC", help="name the arm with the best mean over seeds of METRIC")
    parser.add_argument("--mode", choices=("min", "max"), help="better METRIC is lower or higher (default: by name)")
    parser.add_argument("--test", action="store_true", help="with --select: test that arm once, on the parent run")
    parser.add_argument(
        "--register", metavar="NAME", help="with --select --test: put the tested arm's model in the Model Registry"
    )
    args = parser.parse_args(argv)
    if args.test and not args.select:
        parser.error("--test needs --select METRIC (e.g. --select val/loss)")
    if args.register is not None and not args.test:
        parser.error("--register needs --select METRIC --test: the registered model is the tested arm's")
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():  # said without making a store (seconds of MLflow's migrations)
        raise UserError(f"no sweep {args.sweep!r} in {uri}; it holds no sweeps yet: run lit-d2l ablate SPEC.yaml first")
    from lit_d2l.sweeps.reports.report import build_report
    from lit_d2l.sweeps.selection import direction, select_command

    if args.select:
        direction(args.select, args.mode)  # a bad metric or mode fails before the report is written
        check_registered_name(args.register, "--register")
    path, _ = build_report(args.sweep, out_dir=args.out, tracking_uri=args.tracking_uri)
    print(path.read_text())
    print(f"report: {path.with_suffix('.html')} (figures embedded; also {path.name}; both logged on the parent run)")
    if args.select:
        return select_command(args.sweep, args.select, args.mode, args.test, args.tracking_uri, args.register)
    return 0
