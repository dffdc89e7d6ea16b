"""Build the arms of a pack from their ``fit`` arguments, record each in its own MLflow run, train them as one.

Each arm is parsed and built exactly as ``lit-d2l fit`` would build it alone (its seed set first, so
its initialisation, data and shuffle order are its own), and records the same config, params, seeds
and tags. :class:`~lit_d2l.sweeps.packs.module.PackedModule` then trains them in one Lightning fit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.plugins.precision import DoublePrecision
from torch import Tensor

from lit_d2l.errors import NoTestSplit, require
from lit_d2l.fit.checks import as_dict
from lit_d2l.fit.parse import ParsedFit, parse_fit
from lit_d2l.models import built
from lit_d2l.sweeps.packs.batches import PackedBatches, stack_arms
from lit_d2l.sweeps.packs.loggers import ArmLoggers
from lit_d2l.sweeps.packs.module import ArmStream, PackedModule, current_stream
from lit_d2l.sweeps.packs.plan import configured_callbacks
from lit_d2l.tracking.logger import EndStatusOnException, TrackingLogger, run_status_for
from lit_d2l.tracking.run_record import record_run

#: Examples (over all arms) in one evaluation batch of a pack; each arm gets at least its batch_size.
EVAL_EXAMPLES = 8192


@dataclass
class PackedArm:
    """One arm, built as its own fit would build it."""

    parsed: ParsedFit
    shuffle_seed: int
    stream: ArmStream | None = None  # the random stream its dropout draws from, where its solo fit starts training
    logger: TrackingLogger | None = None

    @property
    def model(self) -> Any:
        return self.parsed.model

    @property
    def datamodule(self) -> Any:
        return self.parsed.datamodule


@dataclass
class ArmResult:
    """What became of one arm of a pack."""

    outcome: str  # finished | diverged
    metrics: dict[str, float] = field(default_factory=dict)
    diverged_at_step: int | None = None


def build_arm(args: list[str], run_id: str | None = None, parsed: ParsedFit | Namespace | None = None) -> PackedArm:
    """Parse, seed and build one arm (model, data and shuffle order as in its own fit). With ``run_id``,
    the arm records into that existing run, as ``lit-d2l fit --tracking.run_id`` would. ``parsed``, when
    given, is ``args`` already parsed: its config (built here), or its config and model (not built yet), which
    goes on from the stream it left."""
    if isinstance(parsed, Namespace):
        parsed = parse_fit(args, parsed)
    elif parsed is None or parsed.seed is None or parsed.stream is None:
        parsed = parse_fit(args)
    else:  # as parse_fit left the process: seeded (the init stream derives from PL_GLOBAL_SEED), then made
        assert not getattr(parsed.model, "built", False)
        L.seed_everything(parsed.seed, verbose=False)
        torch.random.set_rng_state(parsed.stream)
    if run_id is not None:
        parsed.config["tracking.run_id"] = run_id
    data = parsed.datamodule
    data.prepare_data()
    for split in ("train", "val"):
        require(len(data.splits[split][0]) > 0, f"the {split} split is empty; give data.num_{split} a positive size")
    with _init_context(parsed.trainer_kwargs.get("precision")):  # as the solo fit's Trainer builds it
        built(parsed.model, data)
    optimizer, scheduler = parsed.config.get("optimizer"), parsed.config.get("lr_scheduler")
    if optimizer is not None or scheduler is not None:  # as LightningCLI's fit hands them to the model
        parsed.model.use_optimizer(as_dict(optimizer), as_dict(scheduler))
    arm = PackedArm(parsed, shuffle_seed=data.shuffle_seed)
    if run_id is not None:  # recorded while the arm's seed is the process's: its seeds as they were used
        tracking = parsed.config.tracking
        arm.logger = TrackingLogger(
            experiment_name=tracking.experiment, tracking_uri=tracking.uri, tags=tracking.tags, run_id=run_id
        )
        record_run(arm.logger, parsed.text, parsed.config.as_dict(), parsed.model, data)
    arm.stream = current_stream()  # built and recorded, as its solo fit is when it starts training
    return arm


def _init_context(precision: Any) -> contextlib.AbstractContextManager:
    """Where a Trainer of ``precision`` creates a model's layers: float64 by default for 64-true."""
    return DoublePrecision().module_init_context() if str(precision).startswith("64") else contextlib.nullcontext()


class PackedData(L.LightningDataModule):
    """The arms' splits stacked along the arm axis; each arm draws its own minibatches."""

    def __init__(self, arms: Sequence[PackedArm]) -> None:
        super().__init__()
        self.arm_data = [arm.datamodule for arm in arms]
        self.shuffle_seeds = [arm.shuffle_seed for arm in arms]
        first = self.arm_data[0]
        self.batch_size = first.batch_size
        self.transform = first.transform_batch
        self._stacked: dict[str, tuple[Tensor, ...]] = {}

    def stacked(self, split: str) -> tuple[Tensor, ...]:
        if split not in self._stacked:
            per_arm = [data.splits[split] for data in self.arm_data]
            tensors = stack_arms(per_arm)
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            self._stacked[split] = tuple(_to_device(t, device) for t in tensors)
        return self._stacked[split]

    def batches(self, split: str, shuffle: bool = False) -> PackedBatches:
        """Every arm's examples of ``split``, arm axis first: each arm's own minibatches (``shuffle``: training), or
        evaluation batches (as a DataModule's ``batches`` gives one model's, for callbacks such as
        :class:`~lit_d2l.callbacks.TrainAccuracy`)."""
        if shuffle:  # training: each arm's own minibatches, exactly as alone
            return PackedBatches(self.stacked(split), self.batch_size, self.shuffle_seeds, transform=self.transform)
        # Evaluation computes a mean over every example, which no batch size changes (beyond rounding):
        # larger batches do the same work in fewer steps.
        size = max(self.batch_size, EVAL_EXAMPLES // len(self.arm_data))
        return PackedBatches(self.stacked(split), size, transform=self.transform)

    def train_dataloader(self) -> PackedBatches:
        return self.batches("train", shuffle=True)

    def val_dataloader(self) -> PackedBatches:
        return self.batches("val")

    def test_dataloader(self) -> PackedBatches:
        return self.batches("test")


def fit_pack(
    arms: Sequence[PackedArm],
    max_grad_norm: float = math.inf,
    diagnostics_every: int = 0,
    trainer_overrides: dict[str, Any] | None = None,
    test_after_fit: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> list[ArmResult]:
    """Train ``arms`` (same architecture and Trainer settings) as one fit; each arm's values go to its
    own run (``arm.logger``), which ends FINISHED (also when it diverged), or FAILED / KILLED with the fit."""
    if test_after_fit and not all(len(arm.datamodule.splits["test"][0]) > 0 for arm in arms):
        raise NoTestSplit()  # refused before training, not after it
    loggers = ArmLoggers([arm.logger for arm in arms if arm.logger is not None])
    require(len(loggers.arms) in (0, len(arms)), "every arm of a pack needs a logger, or none does")
    module = PackedModule([arm.model for arm in arms], max_grad_norm, diagnostics_every, [a.stream for a in arms])
    data = PackedData(arms)

    def diverged(index: int, step: int, reason: str) -> None:
        if loggers.arms:
            loggers.arms[index].set_tags({"outcome": "diverged", "diverged_at_step": step, "diverged_reason": reason})
            loggers.close(index)

    module.on_diverged = diverged
    module.arm_models, module.arm_data = tuple(arm.model for arm in arms), tuple(data.arm_data)
    module.log_graph = bool(arms[0].parsed.config.get("log_graph", False))
    kwargs = {k: v for k, v in arms[0].parsed.trainer_kwargs.items() if k not in ("logger", "callbacks")}
    kwargs |= {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    kwargs |= trainer_overrides or {}
    configured = configured_callbacks(arms[0].parsed.trainer_kwargs)  # per_arm ones (the plan checks)
    trainer = L.Trainer(
        **kwargs, logger=loggers if loggers.arms else False, callbacks=[*configured, *callbacks, EndStatusOnException()]
    )
    for arm in arms:  # in the pack's precision (64-true: float64) for what runs on an arm's own model
        trainer.precision_plugin.convert_module(arm.model)
    loggers.keep_open = test_after_fit  # the arms' runs end once tested, below
    try:
        trainer.fit(module, datamodule=data)
        if test_after_fit:
            trainer.test(module, datamodule=data)
    except BaseException as exc:
        loggers.end(run_status_for(exc))
        raise
    loggers.end("FINISHED")
    results = [ArmResult("finished", {key: float(value) for key, value in last.items()}) for last in module.last]
    for index, (step, _) in module.diverged.items():
        results[index].outcome, results[index].diverged_at_step = "diverged", step
    return results


def _to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """An arm-stacked tensor on ``device``; data shared by every arm (expanded) stays one copy there."""
    if tensor.stride(0) == 0:
        return tensor[0].to(device).unsqueeze(0).expand(tensor.shape)
    return tensor.to(device)
