"""``--backend ray``: the units of a sweep (packs, lone arm × seed pairs) or the folds of ``lit-d2l cv``
as Ray tasks, scheduled over a Ray cluster's nodes.

Each unit declares one CPU (and one GPU where the cluster has GPUs); a unit lost with its worker or
node is retried by Ray (:data:`MAX_RETRIES`). Exactly-once still comes from the claims in MLflow: a
retried unit re-claims its pairs, which it can because the lost attempt's runs belong to a process that
is gone (same host: its pid; a dead Ray node: :func:`dead_node_check`; else the heartbeat). Results come back
as units finish. Ray is an optional extra, imported only here and only when asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lit_d2l.errors import UserError
from lit_d2l.processes import interrupts
from lit_d2l.processes.quiet import worker_quiet

BACKENDS = ("local", "ray")
RAY_MISSING = "Ray is not installed: pip install -e '.[ray]'"
#: The Ray node a run's process ran on (how a run of a lost node is known to be gone).
NODE_TAG = "lit_d2l.ray_node"
#: How often Ray runs a unit again whose worker process or node was lost.
MAX_RETRIES = 3
#: On Ctrl-C: how long running units get to end their runs KILLED before their workers are killed.
CANCEL_GRACE_S = 15.0


@dataclass(frozen=True)
class Cluster:
    """What the Ray cluster offers: how many units run at once, and whether each gets a GPU."""

    slots: int
    gpus: bool


def check_backend(backend: str, address: str | None = None, workers: int = 1) -> None:
    """Refuse an unknown backend, ``--address`` without Ray, the Ray backend without Ray installed, and ``--workers``
    below 1 or with Ray."""
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if backend == "ray" and workers != 1:
        raise UserError("--workers is for --backend local; on Ray a sweep uses every CPU (or GPU) of the cluster")
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and backend != "ray":
        raise UserError("--address names a Ray cluster: give it with --backend ray")
    if backend == "ray":
        _ray()
        check_reachable(address or os.environ.get("RAY_ADDRESS"))


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse in one line a cluster address nothing answers at (``ray.init`` would retry it for minutes).
    ``None``, ``auto`` and ``local`` are left to Ray."""
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot reach Ray at {address} ({reason}); start the cluster there with `ray start --head`, "
            "or drop --address to start Ray on this machine"
        ) from None


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--backend`` and ``--address``, as ``lit-d2l ablate`` and ``lit-d2l cv`` take them."""
    parser.add_argument(
        "--workers", metavar="N", type=int, default=1, help="runs train in N processes here (one GPU each if any)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: processes on this machine (default); ray: tasks on a Ray cluster (pip install -e '.[ray]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster (auto, HEAD:6379, ray://HEAD:10001); default as ray.init(): "
        "$RAY_ADDRESS, else a cluster `ray start` began on this machine, else a Ray started for this command",
    )


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


@contextmanager
def connected(address: str | None = None) -> Iterator[Cluster]:
    """Connect to the Ray cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://...``; None as ``ray.init()``:
    $RAY_ADDRESS, else a cluster ``ray start`` began on this machine, else a Ray instance for the block)."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
        if address is None and not os.environ.get("RAY_ADDRESS"):
            options["include_dashboard"] = False  # a local instance for one command: start it quickly
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = address or os.environ.get("RAY_ADDRESS") or "this machine"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"cannot start or reach Ray at {where} ({first}); start the cluster with `ray start --head`, "
                "or drop --address to run on a Ray instance started on this machine"
            ) from None
        finally:
            for signum, handler in handlers.items():  # ray.init replaces SIGTERM's: lit-d2l's stops runs KILLED
                signal.signal(signum, handler)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        yield Cluster(slots=max(1, gpus or int(resources.get("CPU", 1))), gpus=gpus > 0)
    finally:
        if started:
            ray.shutdown()


def run_on_ray(
    items: list[Any],
    run: Callable[[Any], Any],
    report: Callable[[Any], None],
    died: Callable[[Any, str], Any],
    cluster: Cluster,
) -> None:
    """``run(item)`` for every item as a Ray task (``run`` a module-level function, importable on every node);
    ``report`` each result as its task ends, ``report(died(item, how))`` for an item lost after all retries.

    An exception raised by ``run`` is raised here. On any exception (Ctrl-C, SIGTERM) the tasks still running
    are cancelled: each gets a KeyboardInterrupt (its runs end KILLED), then, after a grace, its worker is
    killed; ``died`` is called for each so that no run stays RUNNING.
    """
    ray = _ray()
    task = ray.remote(_in_worker).options(
        num_cpus=1, num_gpus=1 if cluster.gpus else 0, max_retries=MAX_RETRIES, retry_exceptions=False
    )
    cwd = os.getcwd()
    pending = {task.remote(run, item, cwd): item for item in items}
    # A stop signal is noted and raised between two waits: raised inside Ray's wait it would become SystemExit(1).
    interrupts.enter_graceful()
    try:
        while pending:
            interrupts.raise_if_requested()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # ``run`` raised: as if it ran here
                    raise exc.cause from None
                except ray.exceptions.RayError as exc:  # its worker or node was lost, retries used up
                    result = died(item, _how(exc))
                report(result)
    finally:
        interrupts.leave_graceful()  # a second Ctrl-C while the tasks are cancelled stops at once
        if pending:
            _cancel(ray, list(pending))
            for item in pending.values():
                died(item, "cancelled")


def _cancel(ray: Any, refs: list[Any]) -> None:
    for ref in refs:
        ray.cancel(ref)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
    for ref in left:
        ray.cancel(ref, force=True)
    ray.wait(left, num_returns=len(left), timeout=CANCEL_GRACE_S)


def _how(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"lost on Ray after {MAX_RETRIES} retries ({type(exc).__name__}: {first[:200]})"


def _in_worker(run: Callable[[Any], Any], item: Any, cwd: str) -> Any:
    """In a Ray worker: the driver's working directory where this node has it (relative data paths and
    stores), quiet third-party logging, then ``run(item)``."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    worker_quiet()
    return run(item)


def worker_place() -> tuple[str, int | None]:
    """In a Ray task: (its Ray node id, the index of its GPU as this process sees it, or None)."""
    ray = _ray()
    context = ray.get_runtime_context()
    gpus = context.get_accelerator_ids().get("GPU", [])
    return context.get_node_id(), 0 if gpus else None  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU


def dead_node_check() -> Callable[[Any], str | None]:
    """For :meth:`~lit_d2l.tracking.sweeps.SweepStore.close_stale`: why an MLflow run's process is gone
    when its Ray node (:data:`NODE_TAG`) is dead (the nodes Ray knows to be dead, read once), else None."""
    ray = _ray()
    dead = {node["NodeID"] for node in ray.nodes() if not node.get("Alive", True)} if ray.is_initialized() else set()

    def gone(run: Any) -> str | None:
        node = run.data.tags.get(NODE_TAG, "")
        return f"its Ray node {node[:12]} is dead" if node in dead else None

    return gone
