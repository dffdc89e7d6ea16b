"""Run a pack of a sweep's arm × seed pairs as one vectorized fit (:mod:`lit_d2l.sweeps.packs`).

Every pair is claimed first, exactly as a single pair is (one claim per pair, made in bulk), and
records into its own child run, so the sweep's MLflow data is the same whether it ran packed or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lit_d2l.callbacks.graceful_stop import PendingStop
from lit_d2l.callbacks.heartbeat import Heartbeat
from lit_d2l.processes import interrupts
from lit_d2l.sweeps.packs.fit import PackedArm, build_arm, fit_pack
from lit_d2l.tracking.logger import failure_text, run_status_for
from lit_d2l.tracking.sweeps import PARENT_TAG, SweepStore


def run_pack(
    tasks: Sequence[Any],
    outcome: Callable[..., Any],
    device_index: int | None = None,
) -> list[Any]:
    """Claim, build and train ``tasks`` (the sweep runner's pair tasks) as packs; one outcome per task,
    in order, made by ``outcome(task, kind, run_id=..., metrics=..., error=..., device=...)``."""
    first = tasks[0]
    device = "cpu" if device_index is None else f"cuda:{device_index}"
    overrides = {} if device_index is None else {"accelerator": "gpu", "devices": [device_index]}
    store = SweepStore(first.tracking_uri)
    pack_tag = {"lit_d2l.packed_arms": str(len(tasks))}
    requests = [(task.run_name, {**task.tags, "device": device, **pack_tag}) for task in tasks]
    claims = store.claim_pairs(first.tags[PARENT_TAG], first.experiment_id, requests)
    results: dict[int, Any] = {}
    built: list[tuple[int, PackedArm]] = []
    try:
        for index, (task, (run_id, taken)) in enumerate(zip(tasks, claims, strict=True)):
            if run_id is None:
                results[index] = outcome(task, "skipped", error=taken, device=device)
                continue
            try:
                arm = build_arm([*task.args, "--tracking.run_id", run_id], run_id, task.take_parsed())
                assert arm.logger is not None
                arm.logger.log_hyperparams(task.params)  # written with the run's other params, in one call
                built.append((index, arm))
            except Exception as exc:  # this arm's settings failed: its run ends FAILED, the pack goes on
                interrupts.raise_if_requested()  # unless a stop signal cut its building short: a stop
                store.log_params(run_id, task.params)
                store.end_if_running(run_id, "FAILED")
                results[index] = outcome(task, "failed", error=failure_text(exc), device=device)
        for group in _same_shapes(built):
            arms = [arm for _, arm in group]
            try:
                fitted = fit_pack(
                    arms,
                    max_grad_norm=first.max_grad_norm,
                    diagnostics_every=first.diagnostics_every,
                    trainer_overrides=overrides,
                    test_after_fit=bool(arms[0].parsed.config.get("test_after_fit")),
                    # PendingStop: a stop noted while claiming and building stops it at once
                    callbacks=[PendingStop(), Heartbeat(first.unit or f"pack of {len(arms)} arms")],
                )
            except Exception as exc:  # the whole pack failed (its runs end FAILED); the sweep goes on
                interrupts.raise_if_requested()
                for index, arm in group:
                    if arm.logger is not None and arm.logger.status == "RUNNING":
                        arm.logger.end("FAILED")
                    results[index] = outcome(
                        tasks[index], "failed", run_id=_run_id(arm), error=failure_text(exc), device=device
                    )
                continue
            for (index, arm), result in zip(group, fitted, strict=True):
                results[index] = outcome(
                    tasks[index], result.outcome, run_id=_run_id(arm), metrics=result.metrics, device=device
                )
    except BaseException as exc:  # a stop signal, while building or training: no claimed pair's run stays RUNNING
        status = run_status_for(exc)
        for _, arm in built:
            if arm.logger is not None and arm.logger.status == "RUNNING":
                arm.logger.end(status)  # what it logged is stored first
        for run_id, _ in claims:
            if run_id is not None:
                store.end_if_running(run_id, status)
        raise
    return [results[index] for index in range(len(tasks))]


def _run_id(arm: PackedArm) -> str | None:
    return arm.logger.version if arm.logger is not None else None


def _same_shapes(built: list[tuple[int, PackedArm]]) -> list[list[tuple[int, PackedArm]]]:
    """Built arms grouped by what must match inside one pack: parameter names and shapes, split shapes."""
    groups: dict[tuple, list[tuple[int, PackedArm]]] = {}
    for index, arm in built:
        params = tuple((name, tuple(p.shape)) for name, p in arm.model.named_parameters())
        splits = tuple(
            (split, tuple(tuple(t.shape) for t in tensors)) for split, tensors in sorted(arm.datamodule.splits.items())
        )
        groups.setdefault((type(arm.model), params, splits), []).append((index, arm))
    return list(groups.values())
