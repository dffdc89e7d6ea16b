"""``lit-d2l runs``: the newest runs of the store and their status, or those closed because their process was gone."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from lit_d2l.errors import UserError
from lit_d2l.tracking.liveness import PARENT_TAG, STALE_TAG, close_stale_in
from lit_d2l.tracking.runs import StoredRun, list_runs, missing_parents
from lit_d2l.tracking.store import holds_nothing, in_memory, resolve_tracking_uri, sqlite_path, store_writable


def runs_command(args: argparse.Namespace, rest: list[str]) -> int:
    """``lit-d2l runs [--stale] [--experiment NAME] [--limit N]``: the newest runs and their status."""
    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and holds_nothing(db) and not in_memory(uri):  # (check_store refuses one in memory)
        print(f"no runs in {uri}")  # and no store made to say so
        return 0
    if store_writable(uri):  # a read-only store is listed as it is
        close_stale_in(uri)
    runs = list_runs(uri, experiment=args.experiment, stale_only=args.stale, limit=args.limit)
    if not runs:
        print("no runs closed as stale" if args.stale else f"no runs in {uri}")
        return 0
    if not args.stale:  # an arm listed without its sweep's parent run is shown under it
        runs += missing_parents(uri, runs)
    for run, depth in _nested(runs):
        line = f"{'  ' * depth}{run.run_id}  {run.status:<8}  {run.started}  {run.experiment}/{run.name}"
        line += _answer(run.metrics)
        if args.stale:
            line += f"\n    {run.tags.get(STALE_TAG, '')}"
        print(line)
    return 0


def _nested(runs: list[StoredRun]) -> Iterator[tuple[StoredRun, int]]:
    """The runs in the order given (newest first), each child of a listed parent (a sweep's arm, a fold) right under
    it, indented; a family comes where its newest run would (a sweep's parent starts before its arms)."""
    by_id = {run.run_id: run for run in runs}
    children: dict[str, list[StoredRun]] = {}
    for run in runs:
        children.setdefault(run.tags.get(PARENT_TAG, ""), []).append(run)

    def root(run: StoredRun) -> StoredRun:
        seen = {run.run_id}
        while (parent := by_id.get(run.tags.get(PARENT_TAG, ""))) is not None and parent.run_id not in seen:
            run = parent
            seen.add(run.run_id)
        return run

    def family(run: StoredRun, depth: int) -> Iterator[tuple[StoredRun, int]]:
        yield run, depth
        for child in children.get(run.run_id, []):
            yield from family(child, depth + 1)

    shown: set[str] = set()
    for run in runs:
        top = root(run)
        if top.run_id not in shown:
            shown.add(top.run_id)
            yield from family(top, 0)


#: What a line of ``lit-d2l runs`` shows of a run's results: a fit's validation, a parent's summary.
SHOWN = ("val/loss", "val/acc", "best/val/loss", "val/loss_mean")


def _answer(metrics: dict[str, float]) -> str:
    """``  val/loss 0.0123, val/acc 0.91``: the run's headline metrics, where it logged them."""
    shown = [f"{key} {metrics[key]:.4g}" for key in SHOWN if key in metrics]
    return f"  {', '.join(shown)}" if shown else ""
