"""K models of one architecture trained side by side as one LightningModule (vectorized with ``torch.func``).

Every parameter of the pack is the arms' parameters stacked along a leading arm axis (held as one ``[K, n]``
tensor for the weights and one for the biases, viewed per parameter at each step); one training
step evaluates every arm's objective J_k = L_k + λ_k/2·Σ‖W_k‖² on its own minibatch with
``vmap(functional_call(...))`` and back-propagates their sum, whose gradient with respect to arm k's
slice is exactly ∂J_k/∂θ_k (the arms share nothing). :class:`~lit_d2l.sweeps.packs.optim.PackedSGD` then
takes each arm's own SGD step. Metrics are logged per arm as ``arm<k>/<name>``, at the steps and with
the ``epoch`` Lightning gives a single model's ``self.log`` values, and
:class:`~lit_d2l.sweeps.packs.loggers.ArmLoggers` writes them to each arm's own MLflow run. They go to the
logger's public ``log_metrics`` rather than through ``self.log``: Lightning's result collection
costs about a millisecond per ``self.log`` call once it holds K × 4 keys (measured: 9.4 s of a
22.5 s fit of 18 arms), which would make the pack slower than the arms alone.

Each arm's dropout masks are drawn outside the vectorized forward by that arm's own dropout modules, from
its own random stream (captured where its solo fit starts training and kept in the pack's state), so a
packed dropout arm draws the masks its solo fit draws (:meth:`PackedModule.arm_masks`).

An arm whose loss or gradient norm becomes non-finite, or whose gradient norm exceeds
``max_grad_norm``, is recorded as diverged at that step (before its update, as
:class:`~lit_d2l.callbacks.DivergenceGuard` does alone) and frozen; the others go on unaffected.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torchmetrics import Metric

from lit_d2l.callbacks.diagnostics import distinct_units, linear_layers, summarize, units_metrics, write_artifacts
from lit_d2l.callbacks.divergence import why_diverged
from lit_d2l.callbacks.graph import log_graph_files
from lit_d2l.callbacks.memory import step_memory
from lit_d2l.errors import require
from lit_d2l.graph import graph_figure
from lit_d2l.models.base import Classifier, D2LModule
from lit_d2l.models.mlp import DropoutScratch
from lit_d2l.seeding import run_seed
from lit_d2l.sweeps.packs.loggers import arm_prefix
from lit_d2l.sweeps.packs.optim import ADAM_SETTINGS, PackedAdam, PackedSGD, arm_optimizer, arm_schedule, scheduled_lr

_DROPOUTS = (nn.Dropout, DropoutScratch)
#: Layers that ``vmap`` runs for every arm as one grouped operation, slower on a CPU than the arms one at a time
#: (LeNet, 12 arms at batch 64, forward and backward: 76 ms vectorized, 48 ms in a loop); on a GPU it is faster.
LOOPED_ON_CPU = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: An arm's random stream: the CPU generator's state, and the seed its CUDA generator starts from
#: (``seed_everything`` seeds every CUDA device with the run's seed and a solo fit draws nothing there before
#: training; a seed rather than a state, so that building an arm does not initialise CUDA).
ArmStream = tuple[Tensor, int | None]


def current_stream() -> ArmStream:
    """The process's random stream now: where a solo fit's dropout starts drawing once it is built."""
    return torch.get_rng_state(), run_seed()


class ArmDropout(nn.Module):
    """Dropout that applies the mask it is given (the ``mask`` buffer, one per arm through ``functional_call``).

    The pack draws each arm's masks outside the vectorized forward, with that arm's own dropout
    module on that arm's own random stream (:meth:`PackedModule.arm_masks`), so they are the masks
    the arm's solo fit draws. ``calls``, when a list, records the shape and dtype of every input
    instead (the shapes the masks need).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(()))
        self.calls: list[tuple[torch.Size, torch.dtype]] | None = None

    def forward(self, X: Tensor) -> Tensor:
        if not self.training:
            return X
        if self.calls is not None:
            self.calls.append((X.shape, X.dtype))
            return X
        return X * self.mask


class PackedModule(L.LightningModule):
    """The arms of a pack (built, identical in architecture) trained as one module."""

    def __init__(
        self,
        arms: Sequence[D2LModule],
        max_grad_norm: float = math.inf,
        diagnostics_every: int = 0,
        rng_states: Sequence[ArmStream] | None = None,
    ) -> None:
        super().__init__()
        first = arms[0]
        self.num_arms = len(arms)
        self.max_grad_norm = max_grad_norm
        self.diagnostics_every = diagnostics_every
        self.is_classifier = isinstance(first, Classifier)
        self.num_outputs = getattr(first, "num_outputs", None) if self.is_classifier else None  # for callbacks
        self.weight_names = list(first.weights())
        template, dropout_paths = _template(first)
        self._template = (template,)  # a tuple: not a registered submodule, so its meta tensors stay out
        self._objectives = (_Objectives(template),)
        params, buffers = stack_module_state(list(arms))
        require(
            len({t.dtype for t in params.values()}) == 1,
            "its parameters do not share one dtype (a pack holds each group of them in one tensor)",
        )
        # Each group's parameters in one [K, n] tensor, viewed per name at every step (:meth:`stacked`): the
        # optimizer then steps, and the divergence check measures, one tensor per group, not one per parameter.
        groups = {"weights": self.weight_names, "biases": [n for n in params if n not in self.weight_names]}
        self.layout = {group: [(n, params[n].shape[1:]) for n in names] for group, names in groups.items() if names}
        self.flat = nn.ParameterDict(
            {
                group: nn.Parameter(torch.cat([params[n].detach().flatten(1) for n, _ in layout], dim=1))
                for group, layout in self.layout.items()
            }
        )
        self.buffer_names = list(buffers)
        for name, value in buffers.items():
            self.register_buffer(f"arm_buffer_{_key(name)}", value)
        optimizers = [arm_optimizer(a) for a in arms]
        kinds = {kind for kind, _ in optimizers}
        if len(kinds) > 1:
            raise ValueError(f"the arms of a pack must share one optimizer, got {sorted(kinds)}")
        self.optimizer_kind = kinds.pop()
        for setting in optimizers[0][1]:  # each arm's own lr, momentum or betas, weight decay ...
            values = [settings[setting] for _, settings in optimizers]
            self.register_buffer(f"arm_{setting}", torch.tensor(values, dtype=torch.float64))  # as torch holds them
        self.register_buffer("arm_l2", torch.tensor([float(a.l2) for a in arms], dtype=torch.float32))
        schedules = [arm_schedule(a) for a in arms]
        if len({s[0] if s else None for s in schedules}) > 1:
            raise ValueError("the arms of a pack must share one kind of LR schedule")
        self.schedule = schedules[0][0] if schedules[0] else None
        config = getattr(first, "optimizer_config", None)  # named as LearningRateMonitor names it: lr-SGD/weights
        self.optimizer_name = (
            config["class_path"].rsplit(".", 1)[-1] if config else type(first.default_optimizer()).__name__
        )
        self.schedule_settings: dict[str, Tensor] = {}
        if self.schedule is not None:
            self.register_buffer("arm_base_lr", self.arm_lr.clone())
            for key in schedules[0][1]:
                self.schedule_settings[key] = torch.tensor([s[1][key] for s in schedules], dtype=torch.float64)
        self.penalised = [bool(a.l2) for a in arms]
        self.any_penalty = any(self.penalised)  # else the penalty's terms are not even computed
        self.register_buffer("active", torch.ones(self.num_arms, dtype=torch.bool))
        # Dropout: each arm's own modules draw its masks from its own stream, saved with the pack's state
        # (a resumed pack goes on with the same masks). By default every arm starts from the current stream.
        self.dropout_paths = dropout_paths
        self._arm_dropouts = tuple(tuple(a.get_submodule(path) for path in dropout_paths) for a in arms)
        self._dropout_calls: dict[tuple, list[tuple[torch.Size, torch.dtype]]] = {}
        states = list(rng_states) if rng_states is not None else [current_stream()] * self.num_arms
        self.register_buffer("arm_rng_cpu", torch.stack([cpu for cpu, _ in states]))
        self._cuda_seeds = [seed for _, seed in states]
        self.register_buffer("arm_rng_cuda", None)  # made at the first draw on a CUDA device
        self.diverged: dict[int, tuple[int, str]] = {}  # arm -> (step, reason)
        self.on_diverged: Callable[[int, int, str], None] | None = None
        self._sums: dict[str, tuple[Tensor, Tensor]] = {}
        self._pending_stats: Tensor | None = None
        self._step_values: tuple[int, dict[str, Tensor]] | None = None
        self._step_objective: Tensor | None = None  # this step's J per arm (a non-finite J diverges too)
        self.last: list[dict[str, Tensor]] = [{} for _ in arms]  # each arm's latest value of every metric
        # The arms' own models and DataModules (tuples: not submodules): their end-of-fit results.
        self.arm_models: tuple[D2LModule, ...] = ()
        self.arm_data: tuple[Any, ...] = ()
        self.log_graph = False  # log each arm's graph.svg/graph.png at the first step, as a single fit does
        self._linear_paths = [name for name, m in template.named_modules() if isinstance(m, nn.Linear)]
        self.loop_on_cpu = any(isinstance(m, LOOPED_ON_CPU) for m in template.modules())  # see each_arm
        self.arm_rows: list[list[dict[str, Any]]] = [[] for _ in arms]  # each arm's diagnostics/layers.csv

    # -- the vectorized model -------------------------------------------------------------------

    @property
    def template(self) -> D2LModule:
        return self._template[0]

    def stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(parameters, buffers) of every arm, keyed by the single model's names, arm axis first."""
        params = {name: value for group, flat in self.flat.items() for name, value in self._split(group, flat).items()}
        buffers = {name: getattr(self, f"arm_buffer_{_key(name)}") for name in self.buffer_names}
        return params, buffers

    def _split(self, group: str, flat: Tensor) -> dict[str, Tensor]:
        """A group's ``[K, n]`` tensor (its parameters, or their gradients) as views of each parameter's shape."""
        names, shapes = zip(*self.layout[group], strict=True)
        parts = flat.split([math.prod(shape) for shape in shapes], dim=1)
        return {name: part.view(len(part), *shape) for name, part, shape in zip(names, parts, shapes, strict=True)}

    def arm_outputs(self, inputs: Sequence[Tensor]) -> Tensor:
        """Every arm's model on its own inputs: ``[K, B, ...]``."""
        template = self.template
        template.train(self.training)

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], *batch: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), batch)

        params, buffers = self.stacked()
        return self.each_arm(one, params, buffers | self.arm_masks(inputs), *inputs)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.arm_outputs(inputs)

    def arm_objectives(self, batch: Sequence[Tensor], activations: bool = False) -> tuple[Tensor, ...]:
        """(J, L) per arm, ``[K]`` each, on one ``[K, B, ...]`` batch: the model's own
        :meth:`~lit_d2l.models.base.D2LModule.objectives`, run for every arm at once with its own λ; with
        ``activations``, also the mean and std of every ``nn.Linear`` output per arm, ``[K, layers, 2]``."""
        objectives = self._objectives[0]
        objectives.train(self.training)

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], l2: Tensor, *arm_batch: Tensor):
            stats: list[Tensor] = []
            hooks = [_record_stats(m, stats) for _, m in linear_layers(objectives)] if activations else []
            try:
                state = {f"model.{name}": value for name, value in (params | buffers).items()}
                # λ = 0 for every arm: a float, so the penalty's terms are not even computed (as alone)
                objective, data_loss = functional_call(objectives, state, (arm_batch, l2 if self.any_penalty else 0.0))
            finally:
                for hook in hooks:
                    hook.remove()
            if activations:
                return objective, data_loss, torch.stack(stats)
            return objective, data_loss

        params, buffers = self.stacked()
        buffers = buffers | self.arm_masks(batch[:-1])
        return self.each_arm(one, params, buffers, self.arm_l2, *batch)

    def each_arm(self, one: Callable[..., Any], *args: dict[str, Tensor] | Tensor) -> Any:
        """``one`` on every arm's slice of ``args`` (:func:`map_arms`), in a loop on a CPU for a model with layers a
        CPU runs faster one arm at a time (:data:`LOOPED_ON_CPU`)."""
        first = next(arg for arg in args if isinstance(arg, Tensor))
        return map_arms(one, args, looped=self.loop_on_cpu and first.device.type == "cpu")

    # -- dropout: each arm's masks from its own stream ------------------------------------------

    def arm_masks(self, inputs: Sequence[Tensor]) -> dict[str, Tensor]:
        """This step's dropout masks, ``{"<path>.mask": [K, ...]}``: arm k's are drawn by its own dropout
        modules (``nn.Dropout``, ``DropoutScratch``, with its own p) on ones of the input's shape, in the
        order its forward calls them, from its own stream, as its solo fit draws them (empty in evaluation)."""
        if not self.training or not self.dropout_paths:
            return {}
        device = inputs[0].device
        calls = self._calls(inputs)
        masks: list[list[Tensor]] = [[] for _ in self.dropout_paths]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the process's stream is kept
            for arm in range(self.num_arms):
                with self.arm_stream(arm, device):
                    for index, (module, (shape, dtype)) in enumerate(zip(self._arm_dropouts[arm], calls, strict=True)):
                        module.train()
                        masks[index].append(module(torch.ones(shape, dtype=dtype, device=device)))
        return {f"{path}.mask": torch.stack(m) for path, m in zip(self.dropout_paths, masks, strict=True)}

    def _calls(self, inputs: Sequence[Tensor]) -> list[tuple[torch.Size, torch.dtype]]:
        """The input shape and dtype of each dropout module, in the paths' order, for one arm's ``inputs``
        (from a forward pass on the meta device, once per input shape)."""
        key = tuple((tuple(t.shape[1:]), t.dtype) for t in inputs)
        if key not in self._dropout_calls:
            template = self.template
            if key[0][1].is_floating_point:  # in the pack's precision (64-true: float64 inputs)
                template.to(key[0][1])
            dropouts = [template.get_submodule(path) for path in self.dropout_paths]
            for module in dropouts:
                module.calls = []
            try:
                template.train(True)
                template(*(torch.empty(shape, dtype=dtype, device="meta") for shape, dtype in key))
            finally:
                recorded = [module.calls or [] for module in dropouts]
                for module in dropouts:
                    module.calls = None
            require(
                all(len(calls) == 1 for calls in recorded),
                "a packed model must call each of its dropout modules once per forward pass; run it alone (--pack off)",
            )
            self._dropout_calls[key] = [calls[0] for calls in recorded]
        return self._dropout_calls[key]

    @contextlib.contextmanager
    def arm_stream(self, arm: int, device: torch.device | None = None) -> Iterator[None]:
        """Draw from arm ``arm``'s own stream (CPU, and CUDA on a CUDA ``device``) and keep where it got to.
        The caller restores the process's stream (``torch.random.fork_rng``)."""
        cuda = device is not None and device.type == "cuda"
        if cuda and self.arm_rng_cuda is None:
            self.arm_rng_cuda = torch.stack([self._cuda_start(seed, device) for seed in self._cuda_seeds])
        # A copy of its own: torch reads a state that is a view into a stack from the stack's start (or crashes).
        torch.set_rng_state(self.arm_rng_cpu[arm].to("cpu", copy=True))
        if cuda:
            torch.cuda.set_rng_state(self.arm_rng_cuda[arm].to("cpu", copy=True), device)
        yield
        self.arm_rng_cpu[arm] = torch.get_rng_state().to(self.arm_rng_cpu.device)
        if cuda:
            self.arm_rng_cuda[arm] = torch.cuda.get_rng_state(device).to(self.arm_rng_cuda.device)

    @staticmethod
    def _cuda_start(seed: int | None, device: torch.device) -> Tensor:
        """The state of ``device``'s generator seeded with ``seed`` (its state now when None)."""
        with torch.random.fork_rng(devices=[device]), torch.cuda.device(device):
            if seed is not None:
                torch.cuda.manual_seed(seed)  # the current device's generator: ``device``'s, here
            return torch.cuda.get_rng_state(device)

    # -- training -------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        diagnose = self.diagnostics_every > 0 and self.global_step % self.diagnostics_every == 0
        objective, data_loss, *stats = self.arm_objectives(batch, activations=diagnose)
        self._pending_stats = stats[0].detach() if stats else None
        objective_now, data_now = objective.detach(), data_loss.detach()
        self._step_objective = objective_now
        self._accumulate("train", objective_now, torch.ones_like(objective_now))
        self._accumulate("train_data", data_now, torch.ones_like(data_now))
        if self._logs_this_step():  # written once the step is done: an arm diverging now records nothing of it
            self._step_values = (self.global_step, {"train/loss": objective_now})
        # Diverged arms add nothing (their NaN would not reach the others' gradients anyway).
        return torch.where(self.active, objective, torch.zeros_like(objective)).sum()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """At a fit's first step, what a single fit records then: the memory a training step keeps for
        backward (:class:`~lit_d2l.callbacks.MemoryMeter`) and, when asked, the objective's graph
        (:class:`~lit_d2l.callbacks.ComputationGraphArtifact`). Both depend only on the architecture, the
        batch's shape and whether λ > 0 (the graph's s node, the weights saved for it), so one side pass for the
        unpenalised arms and one for the penalised serve every arm; side passes draw nothing from the training's
        streams."""
        if self.global_step != 0 or batch_idx != 0 or not self.arm_models:
            return
        memory: dict[str, list[float]] = {}
        graphed = self.log_graph and self.logger is not None
        by_penalty: dict[bool, list[int]] = {}
        for arm in self._open_arms():
            by_penalty.setdefault(bool(self.arm_models[arm].l2), []).append(arm)
        for arms in by_penalty.values():
            model = self.arm_models[arms[0]]
            own = tuple(t[arms[0]].cpu().clone() for t in batch)  # its own storage: bytes are counted per storage
            for key, value in step_memory(model, own).items():
                for arm in arms:
                    memory.setdefault(key, [0.0] * self.num_arms)[arm] = value
            if graphed:
                _, figure = graph_figure(model, own)
                log_graph_files(figure, [self.logger.arms[arm] for arm in arms])
        self.log_arms({key: torch.tensor(values) for key, values in memory.items()}, epoch=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step_values is not None:
            self.log_arms(self._step_values[1], step=self._step_values[0])
            self._step_values = None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = {group: flat.grad.detach() for group, flat in self.flat.items() if flat.grad is not None}
        if not grads:
            return
        # each arm's total gradient norm, as DivergenceGuard's: the norm of the (groups') norms
        norms = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads.values()]), dim=0
        )
        if self._pending_stats is not None:
            self._log_diagnostics(grads.get("weights"))
        reasons = why_diverged(self.max_grad_norm, norms, self._step_objective)  # as DivergenceGuard's, per arm
        for arm in self._open_arms():
            if reasons[arm] is not None:
                self._diverge(arm, reasons[arm])

    def _diverge(self, arm: int, reason: str) -> None:
        if self.logger is not None and self.arm_rows[arm]:  # before its run closes, as a single fit's on_exception
            write_artifacts(self.logger.arms[arm], self.arm_rows[arm], None, figure=False)
        self.active[arm] = False
        self.diverged[arm] = (self.global_step, reason)
        if self.on_diverged is not None:
            self.on_diverged(arm, self.global_step, reason)
        if not bool(self.active.any()):
            self.trainer.should_stop = True

    def _log_diagnostics(self, weight_grads: Tensor | None) -> None:
        """Per arm, what :class:`~lit_d2l.callbacks.LayerDiagnostics` records for a single model (one definition:
        :func:`~lit_d2l.callbacks.diagnostics.summarize`), from the weights' gradients (``[K, n]``)."""
        stats, self._pending_stats = self._pending_stats, None
        assert stats is not None
        split = {} if weight_grads is None else self._split("weights", weight_grads)
        grads = {n: g.flatten(1).norm(dim=1).tolist() for n, g in split.items()}
        params, _ = self.stacked()
        norms = {n: params[n].detach().flatten(1).norm(dim=1).tolist() for n in self.weight_names}
        acts = stats.tolist()
        summaries: dict[str, Tensor] = {}
        step = self.global_step
        for arm in self._open_arms():
            metrics, rows = summarize(
                step,
                {n: v[arm] for n, v in grads.items()},
                {n: v[arm] for n, v in norms.items()},
                {path: (acts[arm][i][0], acts[arm][i][1]) for i, path in enumerate(self._linear_paths)},
            )
            self.arm_rows[arm] = [r for r in self.arm_rows[arm] if r["step"] != step] + rows
            for key, value in metrics.items():
                summaries.setdefault(key, torch.full((self.num_arms,), math.nan))[arm] = value
        self.log_arms(summaries, epoch=False)

    def on_train_epoch_start(self) -> None:
        """Each arm's learning rate for this epoch under its own ``--lr_scheduler``, as the scheduler a single
        fit steps at every epoch's end sets it (in closed form: a resumed pack needs no scheduler state)."""
        if self.schedule is None:
            return
        settings = {key: value.to(self.arm_base_lr.device) for key, value in self.schedule_settings.items()}
        self.arm_lr.copy_(scheduled_lr(self.schedule, self.arm_base_lr, settings, self.current_epoch))
        rates = {f"lr-{self.optimizer_name}/{group}": self.arm_lr.clone() for group in self.layout}  # those it has
        self.log_arms(rates, epoch=False, step=self.global_step)  # as a single fit's LearningRateMonitor logs it

    def on_train_epoch_end(self) -> None:
        params, _ = self.stacked()
        squares = [params[name].detach().flatten(1).pow(2).sum(dim=1) for name in self.weight_names]
        values = {"weight_norm": torch.stack(squares).sum(dim=0).sqrt()} if squares else {}  # as D2LModule logs it
        train, data = self._mean("train"), self._mean("train_data")
        if train is not None:
            values["train/loss_epoch"] = train
        step = self._epoch_end_step()
        self.log_arms(values, step=step)
        if data is not None:  # L alone, for the arms with a penalty (as a single model logs it)
            penalised = [a for a in self._open_arms() if self.penalised[a]]
            self.log_arms({"train/loss_data": data}, arms=penalised, step=step)

    # -- evaluation -----------------------------------------------------------------------------

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _evaluate(self, split: str, batch: tuple[Tensor, ...]) -> None:
        *inputs, y = batch
        outputs = self.arm_outputs(inputs)
        template = self.template
        losses = vmap(template.loss)(outputs, y)
        count = torch.full_like(losses, y.shape[1])
        self._accumulate(f"{split}_loss", losses * count, count)
        if self.is_classifier:
            correct = (outputs.argmax(dim=-1) == y).sum(dim=1).to(losses.dtype)
            self._accumulate(f"{split}_acc", correct, count)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _log_evaluation(self, split: str) -> None:
        values = {f"{split}/{name}": self._mean(f"{split}_{name}") for name in ("loss", "acc")}
        if not self.trainer.sanity_checking:  # Lightning records nothing of the sanity check
            self.log_arms({k: v for k, v in values.items() if v is not None}, step=self._epoch_end_step())

    # -- logging --------------------------------------------------------------------------------

    def log_arms(
        self, values: dict[str, Tensor], arms: Sequence[int] | None = None, epoch: bool = True, step: int | None = None
    ) -> None:
        """Log one value per arm (``values[name][k]``) for every open arm, at ``step`` (default: this step), as
        ``self.log`` would for one model (with Lightning's ``epoch``); the last values are kept in :attr:`last`."""
        arms = self._open_arms() if arms is None else arms
        metrics: dict[str, Tensor | int] = {}
        for arm in arms:
            for name, value in values.items():
                metrics[f"{arm_prefix(arm)}{name}"] = self.last[arm][name] = value[arm]
        if epoch:
            metrics["epoch"] = self.current_epoch
        if self.logger is not None and arms:
            self.logger.log_metrics(metrics, step=self.global_step if step is None else step)

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's ``self.log`` as a configured callback calls it on a pack (``per_arm`` callbacks such as
        :class:`~lit_d2l.callbacks.TrainAccuracy`): ``value`` holds one value per arm, and each goes to its arm's
        run at the step a single fit's epoch-level value goes to."""
        self.log_arms({name: torch.as_tensor(value).reshape(self.num_arms)}, step=self._epoch_end_step())

    def _epoch_end_step(self) -> int:
        """The step Lightning records epoch-end and validation values at: during a fit, that of the last
        training step (one less than the steps taken); in a test after the fit, the steps taken."""
        if self.trainer.state.fn == "fit":
            return max(0, self.global_step - 1)
        return self.global_step

    # -- optimisation ---------------------------------------------------------------------------

    def configure_optimizers(self) -> PackedSGD | PackedAdam:
        """Each arm's own optimizer (its SGD, or the configured SGD, Adam or AdamW), restated for the pack;
        biases never decay, as :meth:`D2LModule.parameter_groups` has it."""
        decay = bool((self.arm_weight_decay != 0).any())
        groups = [{"params": [flat], "decay": decay and group == "weights"} for group, flat in self.flat.items()]
        if self.optimizer_kind != "sgd":
            return PackedAdam(groups, self._optimizer_settings, self.optimizer_kind == "adamw")
        momentum = bool((self.arm_momentum != 0).any())
        return PackedSGD([group | {"momentum": momentum} for group in groups], self._optimizer_settings)

    def _optimizer_settings(self) -> dict[str, Tensor | None]:
        """Each arm's optimizer settings (lr, momentum or betas and eps, weight decay) and which arms step."""
        names = ("lr", "momentum", "weight_decay") if self.optimizer_kind == "sgd" else ADAM_SETTINGS
        active = self.active if self.diverged else None  # None: every arm steps, nothing to mask
        return {**{name: getattr(self, f"arm_{name}") for name in names}, "active": active}

    # -- per-arm results ------------------------------------------------------------------------

    def unpack_into(self, arms: Sequence[D2LModule]) -> None:
        """Copy each arm's trained slice back into its own model (for its end-of-fit results)."""
        params, _ = self.stacked()
        with torch.no_grad():
            for index, arm in enumerate(arms):
                for name, own in arm.named_parameters():
                    own.copy_(params[name][index].to(own.device))

    def on_fit_end(self) -> None:
        """Each arm's end-of-fit metrics (e.g. the linear models' distance to the closed form), from its own model."""
        if not self.arm_models:
            return
        self.unpack_into(self.arm_models)
        for arm in self._open_arms():
            values = self.arm_models[arm].end_of_fit_metrics(self.arm_data[arm])
            units = distinct_units(self.arm_models[arm]) if self.diagnostics_every > 0 else {}
            values |= units_metrics(units)  # as LayerDiagnostics at a single fit's end: symmetry (D2L 5.4.3)
            if values:
                self.log_arms({key: torch.full((self.num_arms,), value) for key, value in values.items()}, [arm], False)
            if self.diagnostics_every > 0 and self.logger is not None:
                write_artifacts(self.logger.arms[arm], self.arm_rows[arm], units, figure=False)

    # -- helpers --------------------------------------------------------------------------------

    def _open_arms(self) -> list[int]:
        return [arm for arm in range(self.num_arms) if arm not in self.diverged]

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this step's values (every ``log_every_n_steps`` steps), as for one model."""
        every = self.trainer.log_every_n_steps
        return every > 0 and ((self.global_step + 1) % every == 0 or self.trainer.should_stop)

    def _accumulate(self, name: str, total: Tensor, count: Tensor) -> None:
        old_total, old_count = self._sums.get(name, (0, 0))
        self._sums[name] = (old_total + total, old_count + count)

    def _mean(self, name: str) -> Tensor | None:
        """The epoch's mean of ``name`` per arm, then reset (None when nothing was accumulated)."""
        total, count = self._sums.pop(name, (None, None))
        return None if total is None else total / count


def map_arms(one: Callable[..., Any], args: Sequence[dict[str, Tensor] | Tensor], looped: bool = False) -> Any:
    """``one`` on every arm's slice of ``args`` (tensors, or dicts of them, arm axis first), its results (a tensor
    or a tuple of them) stacked along a new arm axis: vectorized with ``vmap``, or, ``looped``, one arm at a time."""
    if not looped:
        # A random draw inside would come from one stream for every arm, not each arm's own: an error (the plan's
        # trial step finds such a model, which then trains alone).
        return vmap(one, randomness="error")(*args)
    arms = next(arg for arg in args if isinstance(arg, Tensor)).shape[0]
    results = [
        one(*({k: v[arm] for k, v in a.items()} if isinstance(a, dict) else a[arm] for a in args))
        for arm in range(arms)
    ]
    if isinstance(results[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*results, strict=True))
    return torch.stack(results)


class _Objectives(nn.Module):
    """A model's ``objectives`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, model: D2LModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: tuple[Tensor, ...], l2: Tensor | float) -> tuple[Tensor, Tensor]:
        return self.model.objectives(batch, l2)


def _template(model: D2LModule) -> tuple[D2LModule, list[str]]:
    """A copy of the first arm on the meta device (structure only), its dropouts made per-arm."""
    template = copy.deepcopy(model).to("meta")
    for name, child in list(template.named_children()):  # metrics take no part in the forward pass: every
        if isinstance(child, Metric):  # module left out is one fewer for functional_call to walk, every step
            delattr(template, name)
    paths = [name for name, module in template.named_modules() if isinstance(module, _DROPOUTS)]
    for path in paths:
        template.set_submodule(path, ArmDropout().to("meta"))
    return template, paths


def _record_stats(module: nn.Module, stats: list[Tensor]) -> torch.utils.hooks.RemovableHandle:
    def record(_: nn.Module, __: Any, output: Tensor) -> None:
        output = output.detach().float()
        std = output.std() if output.numel() > 1 else torch.zeros((), device=output.device)
        stats.append(torch.stack([output.mean(), std]))

    return module.register_forward_hook(record)


def _key(name: str) -> str:
    """A parameter name as a ParameterDict key (dots are not allowed there)."""
    return name.replace(".", "__")
