"""``lit-d2l ablate`` and ``lit-d2l report``: argument parsing and printing.

The arguments, the spec file and the sweep id are checked before the modules that train or draw are
imported (torch and Lightning take ~5 s to import): help and a bad argument answer at once.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from lit_d2l.errors import UserError
from lit_d2l.processes.terminal import clock_time
from lit_d2l.sweeps.progress import tally
from lit_d2l.sweeps.spec import load_spec
from lit_d2l.tracking.settings import check_registered_name
from lit_d2l.tracking.store import dashboard_hint, holds_nothing, resolve_tracking_uri, sqlite_path, store_option


def ablate_command(args: argparse.Namespace, rest: list[str]) -> int:
    if args.max_runs < 1:
        raise UserError(f"--max-runs must be >= 1, got {args.max_runs}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.resume and args.fresh:
        raise UserError("--resume and --fresh contradict each other: give one (resuming is the default)")
    spec = load_spec(args.spec, max_runs=args.max_runs)
    if not args.dry_run:  # at once: checking the arms (and importing torch) takes seconds, training minutes
        print(f"sweep {spec.sweep_id}: {spec.size()}; checking every arm's settings ...", flush=True)
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
        report = build_report(result.parent_run_id, tracking_uri=args.tracking_uri)
        for line in report.verdict.terminal_lines():
            print(line)
        print(f"report: {report.path.with_suffix('.html')} (figures embedded; also {report.path.name})")
    counts = Counter(outcome.outcome for outcome in result.outcomes)
    before = f"; {result.skipped} done before" if result.skipped else ""
    print(f"sweep {result.sweep_id}: {len(result.outcomes)} arm runs in {took}: {tally(counts)}{before}")
    uri = resolve_tracking_uri(args.tracking_uri)
    print(
        f"sweep {result.sweep_id}: parent run {result.parent_run_id} ({result.status}); view it with: "
        f"lit-d2l report {result.sweep_id}{store_option(uri)} (report.html), or {dashboard_hint(uri)}"
    )
    return 1 if result.failed else 0


def report_command(args: argparse.Namespace, rest: list[str]) -> int:
    if args.test and not args.select:
        raise UserError("--test needs --select METRIC (e.g. --select val/loss)")
    if args.register is not None and not args.test:
        raise UserError("--register needs --select METRIC --test: the registered model is the tested arm's")
    if args.sweep.endswith((".yaml", ".yml")):  # the spec: its sweep, as ablate named it
        if not Path(args.sweep).is_file():
            raise UserError(f"{args.sweep}: no such spec file; give a spec file, a sweep id or a parent run id")
        args.sweep = load_spec(args.sweep).sweep_id
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and holds_nothing(db):  # said without making a store (seconds of MLflow's migrations)
        raise UserError(f"no sweep {args.sweep!r} in {uri}; it holds no sweeps yet: run lit-d2l ablate SPEC.yaml first")
    from lit_d2l.sweeps.reports.report import build_report, check_logged
    from lit_d2l.sweeps.selection import direction, refuse_test_metric, select_command

    refuse_test_metric(args.select or "")  # said as what it is, not as a metric no run logged
    given = {"--metrics": args.metrics or [], "--select": [args.select] if args.select else []}
    check_logged(args.sweep, args.tracking_uri, given)  # a misspelt name: one line, before any report is written
    if args.select:
        direction(args.select, args.mode)  # a bad metric or mode fails before the report is written
        check_registered_name(args.register, "--register")
    report = build_report(args.sweep, out_dir=args.out, tracking_uri=args.tracking_uri, metrics=args.metrics)
    path = report.path
    print(path.read_text())
    where = (
        "both logged on the parent run"
        if report.recorded
        else "not recorded: the parent run keeps its verdict on the spec's metrics"
    )
    print(f"report: {path.with_suffix('.html')} (figures embedded; also {path.name}; {where})")
    if args.select:
        return select_command(args.sweep, args.select, args.mode, args.test, args.tracking_uri, args.register)
    return 0
