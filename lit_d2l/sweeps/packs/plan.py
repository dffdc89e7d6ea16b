"""Which arms of a sweep train together: packs of arms that differ only in settings a pack can vary.

A pack's arms share the architecture, the data's shapes and every Trainer setting; each keeps its own seed,
initialisation, learning rate, momentum, weight decay, L2 penalty, dropout probability, ``data.noise`` and its
optimizer's and LR schedule's numbers (``PACKABLE_KEYS``). Arms that differ in anything else (depth, width,
activation, degree, num_train, max_epochs, ...) go to separate packs. Packs are cut to fit a memory budget.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil
import torch
from lightning.pytorch.core.hooks import DataHooks, ModelHooks
from torch import Tensor

from lit_d2l.fit.checks import as_dict
from lit_d2l.fit.parse import ParsedFit, parse_fit
from lit_d2l.models import built
from lit_d2l.models.base import Classifier, D2LModule
from lit_d2l.models.sgd import MinibatchSGD
from lit_d2l.sweeps.packs.batches import PackedBatches, stack_arms
from lit_d2l.sweeps.packs.module import PackedModule
from lit_d2l.sweeps.packs.optim import PACKED_SCHEDULES, why_optimizer_not_packable, why_schedule_not_packable

#: Settings two arms of one pack may differ in.
PACKABLE_KEYS = frozenset(
    {"seed_everything", "data.seed", "data.shuffle_seed", "data.noise"}
    | {f"model.{k}" for k in ("lr", "momentum", "weight_decay", "l2", "dropout", "sigma")}
    | {f"model.{k}" for k in ("init", "init_std", "init_value", "bias_init", "init_seed")}
    | {f"optimizer.{k}" for k in ("lr", "momentum", "betas", "eps", "weight_decay")}
    | {f"lr_scheduler.{k}" for keys in PACKED_SCHEDULES.values() for k in keys}
)
#: What a pack runs in the model's place, for every arm at once: Lightning's hooks (the training, evaluation
#: and optimizer steps, the epoch ends that log) and D2LModule's evaluation, logging and optimizer groups. A model that
#: defines its own version of one of these trains alone, since the pack would not run it. What the model
#: defines for itself (layers, forward, loss, objectives, weights, end_of_fit_metrics) the pack runs as it is.
PACK_RESTATES = sorted(
    {name for hooks in (ModelHooks, DataHooks) for name in vars(hooks) if not name.startswith("_")}
    - {"configure_model", "configure_sharded_model"}  # building: the pack builds each arm with them
    | {"training_step", "validation_step", "test_step", "configure_optimizers", "optimizer_step", "backward"}
    | {"log_train_loss", "log_epoch_metric", "parameter_groups", "evaluate_batch"}
)
_SIMPLE_TRAINER = {
    "strategy": ("auto",),
    "num_nodes": (1,),
    "accumulate_grad_batches": (1,),
    "gradient_clip_val": (None, 0, 0.0),
    "precision": (None, 32, "32", "32-true", "bf16-mixed", 64, "64", "64-true"),
}

Unit = TypeVar("Unit")
#: Why an arm trains alone when no other arm shares its settings (its model may well pack).
ONLY_ARM = "the only arm with its settings"


@dataclass
class Pack:
    """Arms (any objects; for the sweep runner, its tasks) that train as one fit; ``reason`` says why a
    single arm does not pack."""

    units: list[Any]
    reason: str = ""

    @property
    def packed(self) -> bool:
        return len(self.units) > 1


def signature(settings: dict[str, Any]) -> str:
    """What must be equal for two arms to share a pack: every setting a pack cannot vary, and which
    hidden layers have dropout at all (a layer without dropout has no Dropout module)."""
    fixed = {key: value for key, value in settings.items() if key not in PACKABLE_KEYS}
    if "model.dropout" in settings:
        dropout = settings["model.dropout"]
        fixed["model.dropout>0"] = [p > 0 for p in dropout] if isinstance(dropout, list) else dropout > 0
    return json.dumps(fixed, sort_keys=True, default=str)


def why_not_packable(parsed: ParsedFit) -> str | None:
    """None when a pack can train this configuration exactly as a single fit would; else the reason."""
    model, data, config = parsed.model, parsed.datamodule, parsed.config
    reason = why_model_not_packable(model, data) or why_optimizer_not_packable(as_dict(config.get("optimizer")))
    if reason := reason or why_schedule_not_packable(as_dict(config.get("lr_scheduler"))):
        return reason
    if getattr(data, "loader", None) != "tensor":
        return "data.loader is not 'tensor'"
    trainer = parsed.trainer_kwargs
    for key, allowed in _SIMPLE_TRAINER.items():
        if trainer.get(key, allowed[0]) not in allowed:
            return f"trainer.{key} = {trainer.get(key)!r}"
    devices = trainer.get("devices", "auto")
    if devices not in ("auto", 1, "1") and not (isinstance(devices, list) and len(devices) == 1):
        return f"trainer.devices = {devices!r} (a pack runs on one device)"
    for callback in configured_callbacks(trainer):  # a callback that works on one model sees none in a pack
        if not getattr(callback, "per_arm", False):
            return f"trainer.callbacks: {type(callback).__name__} works on one model (a packed callback sets per_arm)"
    return why_not_vectorized(model, data)


def configured_callbacks(trainer_kwargs: dict[str, Any]) -> list[Any]:
    """The callbacks a config's ``trainer.callbacks`` lists (one, or a list)."""
    callbacks = trainer_kwargs.get("callbacks") or []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def why_model_not_packable(model: Any, datamodule: Any = None) -> str | None:
    """None when a pack can train ``model`` (lit-d2l's or the user's own class): a :class:`D2LModule` whose
    training is the base class's (:data:`PACK_RESTATES`) and whose layers keep no running statistics."""
    name = type(model).__name__
    if not isinstance(model, D2LModule):
        return f"{name} is not a lit_d2l D2LModule (a pack runs D2LModule's training step for every arm)"
    base = Classifier if isinstance(model, Classifier) else D2LModule
    own = [hook for hook in PACK_RESTATES if getattr(type(model), hook) is not getattr(base, hook)]
    if own:
        return f"{name} defines its own {', '.join(own)} (a pack runs {base.__name__}'s)"
    model = built(copy.deepcopy(model), datamodule)  # a copy: the model itself is built once, by its fit
    optimizer = model.default_optimizer()  # the pack's own SGD steps each arm: only SGD can be restated
    if not isinstance(optimizer, (torch.optim.SGD, MinibatchSGD)):
        return f"{name}'s default_optimizer is {type(optimizer).__name__} (a pack trains with SGD)"
    for path, layer in model.named_modules():
        # Batch normalisation's running statistics change in place as it trains: not one set per arm.
        if any(buffer.startswith("running_") for buffer, _ in layer.named_buffers(recurse=False)):
            return f"{name}'s {type(layer).__name__} {path} keeps running statistics, which a pack cannot keep per arm"
    return None


#: What torch.func says when a forward cannot run for every arm at once, and what that means for a model.
_UNVECTORIZABLE = (
    ("random operation", "draws random numbers outside its dropout modules (e.g. nn.functional.dropout), which "
     "a pack cannot draw from each arm's own stream as its solo fit does; use nn.Dropout modules"),
    ("data-dependent control flow", "branches on a tensor's value (data-dependent control flow), which torch.func "
     "cannot run for every arm at once"),
    ("once per forward pass", "calls a dropout module more than once, and a pack draws each arm's masks for one "
     "call of each"),
    # vmap's .item(); a forward on the meta device (which finds a pack's dropout calls) fails at any value read
    *((clue, "reads a tensor's value as a Python number (.item(), float(), or an if on a tensor), which torch.func "
       "cannot do for every arm at once") for clue in ("calling .item()", "item() cannot be called on meta tensors")),
)  # fmt: skip


def why_not_vectorized(model: D2LModule, datamodule: Any) -> str | None:
    """None when two copies of ``model`` take one vectorized training step (forward, objective, backward) on two
    training examples of ``datamodule``, as a pack of them would; else what the model does that a pack cannot.

    On copies, with torch's random stream restored after: the arm's own model, data and stream are untouched.
    Where the copied data cannot be built here (say, a download that fails), the fit will say why: no reason.
    """
    name = type(model).__name__
    with torch.random.fork_rng(devices=[]):
        try:
            data = copy.deepcopy(datamodule)
            examples = tuple(tensor[:2] for tensor in data.splits["train"])
        except Exception:
            return None
        batch = next(iter(PackedBatches(stack_arms([examples, examples]), 2, transform=data.transform_batch)))
        try:
            pack = PackedModule([built(copy.deepcopy(model), data) for _ in range(2)])
            pack.loop_on_cpu = False  # vectorized, as on a GPU: a random draw in the forward pass is found
            objective, _ = pack.train().arm_objectives(batch)
            objective.sum().backward()
        except Exception as exc:
            if (alone := _error_alone(model, data, examples)) is not None:  # broken, not just unpackable
                return f"{name} fails on two training examples even alone, as its fit will: {alone}"
            message = _first_line(exc)
            said = next((meaning for clue, meaning in _UNVECTORIZABLE if clue in message), None)
            return f"{name}'s forward {said}" if said else f"{name} does not run vectorized: {message}"
    return None


def _error_alone(model: D2LModule, data: Any, examples: tuple[Tensor, ...]) -> str | None:
    """What one copy of ``model`` raises taking a training step (objective, backward) on ``examples``, or None."""
    try:
        single = built(copy.deepcopy(model), data).train()
        objective, _ = single.objectives(data.transform_batch(examples))
        objective.backward()
    except Exception as exc:
        return _first_line(exc)
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def arm_bytes(parsed: ParsedFit) -> int:
    """A generous estimate of one arm's memory in a pack: parameters four times over (values, gradients,
    momentum, update), its own copy of the data, and a batch's activations."""
    model, data = built(copy.deepcopy(parsed.model), parsed.datamodule), parsed.datamodule
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    widths = sum(p.shape[0] for p in model.parameters() if p.ndim > 1)
    activations = data.batch_size * widths * 4 * 3
    return 4 * params + _data_bytes(data) + activations


def _data_bytes(data: Any) -> int:
    """The bytes of a DataModule's splits, estimated from its sizes without generating or downloading them."""
    examples = sum(getattr(data, f"num_{split}", 0) or 0 for split in ("train", "val", "test"))
    if not examples and hasattr(data, "val_size"):  # Fashion-MNIST: 60,000 + 10,000 images
        examples = 70_000
    return examples * ((getattr(data, "num_inputs", 0) or 0) + 1) * 4


def memory_budget() -> int:
    """Bytes a pack may use: half the free memory of the GPU in use, else a quarter of the available RAM."""
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free // 2
    return psutil.virtual_memory().available // 4


def plan_packs(
    units: Sequence[Unit],
    settings: Callable[[Unit], dict[str, Any]],
    args: Callable[[Unit], list[str]],
    max_arms: int = 0,
    budget: int | None = None,
    workers: int = 1,
    parsed: Callable[[Unit], ParsedFit | None] | None = None,
) -> list[Pack]:
    """Group ``units`` (one per arm × seed) into packs, in order of first appearance.

    ``settings(unit)`` gives an arm's swept settings, ``args(unit)`` its ``fit`` arguments (parsed once
    per group, to check the model packs and to size the pack, unless ``parsed(unit)`` already holds that
    parse: it is read, not changed). ``max_arms`` > 0 caps a pack's size. With several workers, large
    packs are split so that every worker gets one.
    """
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(signature(settings(unit)), []).append(unit)
    budget = memory_budget() if budget is None else budget
    packs: list[Pack] = []
    for members in groups.values():
        if len(members) == 1:
            packs.append(Pack(members, ONLY_ARM))
            continue
        first = (parsed(members[0]) if parsed is not None else None) or parse_fit(args(members[0]))
        reason = why_not_packable(first)
        if reason is not None:
            packs.extend(Pack([member], reason) for member in members)
            continue
        size = max(1, min(len(members), budget // max(1, arm_bytes(first)), max_arms or len(members)))
        packs.extend(Pack(members[start : start + size]) for start in range(0, len(members), size))
    return _spread(packs, workers)


def _spread(packs: list[Pack], workers: int) -> list[Pack]:
    """Halve the largest pack until there is one per worker (or every pack is a single arm)."""
    packs = list(packs)
    while workers > 1 and 0 < len(packs) < workers:  # none: a finished sweep run again has nothing to train
        largest = max(range(len(packs)), key=lambda i: len(packs[i].units))
        units = packs[largest].units
        if len(units) < 2:
            break
        half = (len(units) + 1) // 2
        packs[largest : largest + 1] = [Pack(units[:half]), Pack(units[half:])]
    return packs
