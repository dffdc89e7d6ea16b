"""Arms per minute of three D2L ablation suites: bare PyTorch loops, a bare vectorized loop (the
limit), lit-d2l's runner one arm at a time, with packed arms, in two worker processes, and
on a local Ray instance, on the same arms and data.

- **regularization** (``experiments/ablations/regularization.yaml``): weight decay λ ∈ {0, ..., 10} on
  HighDimLinearData (d = 200, 20 examples, batch 1, 100 epochs = 2,000 steps, val every 5 epochs):
  LinearRegressionScratch, squared loss + λ/2‖w‖², minibatch SGD (D2L 3.7).
- **initialization** (``experiments/ablations/initialization.yaml``): 5 init schemes x 3 activations x
  depth {2, 10, 30} MLPs on GaussianClusters (2,000 examples, batch 64, 5 epochs), per-layer
  diagnostics every 20 steps (D2L 5.4).
- **lenet** (``experiments/ablations/lenet_lr.yaml``): 5 learning rates of the sigmoid LeNet-5 on
  1x28x28 Gaussian-cluster images (1,000 examples, batch 64, 8 epochs = 128 steps; D2L 7.6).

Columns:

- ``bare``: one plain PyTorch loop per arm × seed: the same minibatches (the DataModules' own in-memory
  iterator), the same SGD step (momentum, weight decay on the weights, the L2 penalty) and val on the
  same schedule, recording nothing.
- ``vectorized``: the limit of packing. The suite's pairs grouped into packs as the packed runner
  groups them (``lit_d2l.sweeps.packs.plan.plan_packs``, planned outside the timing), each pack's arms
  built from their configs as ``bare`` builds them, their parameters stacked, and one loop per pack of
  ``torch.func`` (``functional_call`` under ``vmap``, or for convolutions on a CPU a loop over the arms as the
  pack runs them; autograd on the stacked parameters) taking every
  arm's SGD step at once, with the minibatches the pack draws (``PackedBatches``: each arm its own
  data and its own shuffle order) and val on the same schedule. No Lightning, no MLflow, no
  diagnostics or divergence checks. Its final val losses equal the bare loops' up to float rounding
  (``vectorized_vs_bare_max_rel_val_gap``), which an arm on the edge of divergence can amplify (seen:
  one depth-30 ReLU arm of the initialization suite).
- ``unpacked``, ``packed``, ``workers2``: ``lit-d2l ablate``'s runner (``--pack off``, ``--pack auto``,
  ``--workers 2``), recording every arm in MLflow (a fresh SQLite store each).
- ``ray_unpacked``, ``ray_packed``: the same on a local Ray instance, started first and timed apart
  (``ray_startup_s``); their run time includes starting Ray's worker processes.

``--accelerator gpu`` sets ``trainer.accelerator`` for every arm (every column; the bare and vectorized
loops then run on ``cuda``). ``--profile [PATH]`` runs the packed column under cProfile and writes its top
entries by cumulative time to stderr (or PATH); the packed figures then include the profiler's cost.
Prints one JSON object last.

    python benchmarks/ablation_throughput.py [--suites regularization initialization lenet] [--seeds 0]
        [--columns bare vectorized unpacked packed ...] [--accelerator gpu] [--profile [PATH]]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import logging
import math
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap
from torchmetrics import Metric

from lit_d2l.data.batches import TensorBatches
from lit_d2l.fit.parse import parse_fit
from lit_d2l.models import built
from lit_d2l.models.mlp import DropoutScratch
from lit_d2l.sweeps.engine import run_sweep
from lit_d2l.sweeps.packs.batches import PackedBatches, stack_arms
from lit_d2l.sweeps.packs.fit import EVAL_EXAMPLES
from lit_d2l.sweeps.packs.module import LOOPED_ON_CPU, map_arms
from lit_d2l.sweeps.packs.plan import plan_packs
from lit_d2l.sweeps.spec import SEED_KEYS, Arm, SweepSpec, load_spec
from lit_d2l.tracking.sweeps import SweepStore

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "experiments" / "ablations"
SUITES = {
    "regularization": SPECS / "regularization.yaml",
    "initialization": SPECS / "initialization.yaml",
    "lenet": SPECS / "lenet_lr.yaml",
}
QUIET = ["--trainer.logger", "false"]


def device_of(trainer: dict[str, Any]) -> torch.device:
    """Where a fit with these Trainer settings trains: ``cuda`` for accelerator gpu/cuda (or auto with a GPU)."""
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def check_plain_sgd(model: Any, parsed: Any) -> None:
    """The bare loops restate the model's own SGD only: no ``--optimizer``, schedule or dropout."""
    if parsed.config.get("optimizer") is not None or parsed.config.get("lr_scheduler") is not None:
        raise ValueError("the bare loops restate the model's own SGD: no --optimizer or --lr_scheduler")
    if any(isinstance(m, (torch.nn.Dropout, DropoutScratch)) for m in model.modules()):
        raise ValueError("the bare loops do not draw dropout masks as a pack does")


def bare_arm(args: list[str]) -> float:
    """One arm as a plain PyTorch loop (model and data built from its config); returns its last val loss."""
    parsed = parse_fit(args)
    data, trainer = parsed.datamodule, parsed.trainer_kwargs
    model = built(parsed.model, data)
    check_plain_sgd(model, parsed)
    device = device_of(trainer)
    model.to(device)
    weights = list(model.weights().values())
    biases = [p for p in model.parameters() if all(p is not w for w in weights)]
    l2 = float(model.l2)
    groups = [{"params": weights, "weight_decay": model.weight_decay}, {"params": biases, "weight_decay": 0.0}]
    optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=model.lr, momentum=model.momentum)
    splits = {split: tuple(t.to(device) for t in data.splits[split]) for split in ("train", "val")}
    train = TensorBatches(
        splits["train"], data.batch_size, shuffle=True, seed=data.shuffle_seed, transform=data.transform_batch
    )
    val = TensorBatches(splits["val"], data.batch_size, transform=data.transform_batch, pad=False)
    every = trainer.get("check_val_every_n_epoch") or 1
    val_loss = float("nan")
    for epoch in range(trainer["max_epochs"]):
        model.train()
        train.sampler.set_epoch(epoch)
        for *inputs, y in train:
            loss = model.loss(model(*inputs), y)
            if l2:
                loss = loss + l2 / 2 * sum((w**2).sum() for w in weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % every == 0:
            model.eval()
            with torch.no_grad():
                total = sum(model.loss(model(*inputs), y) * len(y) for *inputs, y in val)
                val_loss = float(total / len(splits["val"][0]))
    return val_loss


def pair_settings(spec: SweepSpec, arm: Arm, seed: int) -> dict[str, Any]:
    """An arm × seed's swept settings, as the sweep runner hands them to the pack planner."""
    return {**spec.overrides, **dict(arm.settings), **dict.fromkeys(SEED_KEYS, seed)}


def vectorized_suite(spec: SweepSpec) -> tuple[float, list[float]]:
    """(seconds, each pair's last val loss): the suite's packs, each trained by :func:`vectorized_pack`.
    The packs are planned (by the runner's own planner) before the clock starts."""
    pairs = spec.pairs()
    packs = plan_packs(
        range(len(pairs)),
        lambda i: pair_settings(spec, *pairs[i]),
        lambda i: [*spec.fit_args(*pairs[i]), *QUIET],
    )
    losses = [math.nan] * len(pairs)
    start = time.perf_counter()
    for pack in packs:
        pack_losses = vectorized_pack([[*spec.fit_args(*pairs[i]), *QUIET] for i in pack.units])
        for index, loss in zip(pack.units, pack_losses, strict=True):
            losses[index] = loss
    return time.perf_counter() - start, losses


def vectorized_pack(arg_lists: list[list[str]]) -> list[float]:
    """Build each arm as :func:`bare_arm` does, then train those of one architecture and data shape
    together (as the packed runner splits a pack); each arm's last val loss, in order."""
    built_arms = []
    for args in arg_lists:  # one at a time: each parse seeds the process, which the arm's init and order read
        parsed = parse_fit(args)
        model = built(parsed.model, parsed.datamodule)
        check_plain_sgd(model, parsed)
        built_arms.append((model, parsed.datamodule, parsed.datamodule.shuffle_seed, parsed.trainer_kwargs))
    groups: dict[tuple, list[int]] = {}
    for index, (model, data, _, _) in enumerate(built_arms):
        params = tuple((name, tuple(p.shape)) for name, p in model.named_parameters())
        splits = tuple((s, tuple(tuple(t.shape) for t in data.splits[s])) for s in ("train", "val"))
        groups.setdefault((type(model), params, splits), []).append(index)
    losses = [math.nan] * len(arg_lists)
    for members in groups.values():
        models, datas, seeds, trainers = zip(*(built_arms[i] for i in members), strict=True)
        group_losses = train_vectorized(list(models), list(datas), list(seeds), trainers[0])
        for index, loss in zip(members, group_losses, strict=True):
            losses[index] = loss
    return losses


def train_vectorized(models: list[Any], datas: list[Any], shuffle_seeds: list[int], trainer: dict) -> list[float]:
    """K arms of one architecture as one ``torch.func`` loop: each arm's objective J_k = L_k + λ_k/2·Σ‖W_k‖²
    on its own minibatch under ``vmap``, the gradient of their sum with respect to the stacked parameters
    (arm k's slice: ∂J_k/∂θ_k), and each arm's SGD step (D2L 3.4.3; momentum and weight decay on the
    weights, as ``torch.optim.SGD`` and the pack's ``PackedSGD`` take it). Returns each arm's last val loss."""
    device = device_of(trainer)
    first = models[0]
    template = copy.deepcopy(first).to("meta")  # structure only; the parameters come from the stack
    for name, child in list(template.named_children()):
        if isinstance(child, Metric):
            delattr(template, name)
    stacked, buffers = stack_module_state(models)
    params = {name: t.detach().to(device).requires_grad_() for name, t in stacked.items()}
    buffers = {name: t.to(device) for name, t in buffers.items()}
    weight_names = list(first.weights())

    def arm_vector(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    lr, momentum = arm_vector([m.lr for m in models]), arm_vector([m.momentum for m in models])
    decay, l2 = arm_vector([m.weight_decay for m in models]), arm_vector([float(m.l2) for m in models])
    any_l2, any_decay, any_momentum = bool((l2 > 0).any()), bool((decay > 0).any()), bool((momentum > 0).any())
    buffers_sgd = {name: torch.zeros_like(p) for name, p in params.items()} if any_momentum else {}
    shapes = {name: (-1,) + (1,) * (p.ndim - 1) for name, p in params.items()}

    def outputs(p: dict[str, Tensor], b: dict[str, Tensor], *inputs: Tensor) -> Tensor:
        return functional_call(template, (p, b), inputs)

    def objective(p: dict[str, Tensor], b: dict[str, Tensor], lam: Tensor, *batch: Tensor) -> Tensor:
        data_loss = template.loss(outputs(p, b, *batch[:-1]), batch[-1])
        if not any_l2:  # as the model's objectives: no penalty terms when no arm has λ > 0
            return data_loss
        penalty = lam / 2 * sum((p[name] ** 2).sum() for name in weight_names)
        return torch.where(lam > 0, data_loss + penalty, data_loss)

    def to_device(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:  # data shared by every arm stays one copy
        return tuple(t[0].to(device).expand(t.shape) if t.stride(0) == 0 else t.to(device) for t in tensors)

    train_data = to_device(stack_arms([d.splits["train"] for d in datas]))
    val_data = to_device(stack_arms([d.splits["val"] for d in datas]))
    batch_size, transform = datas[0].batch_size, datas[0].transform_batch
    train = PackedBatches(train_data, batch_size, shuffle_seeds, transform=transform)
    val = PackedBatches(val_data, max(batch_size, EVAL_EXAMPLES // len(models)), transform=transform)
    every = trainer.get("check_val_every_n_epoch") or 1
    # Convolutions on a CPU one arm at a time, as the pack runs them (LOOPED_ON_CPU): vmap's grouped ones are slower
    looped = device.type == "cpu" and any(isinstance(m, LOOPED_ON_CPU) for m in template.modules())

    def arm_step(*args: Any) -> Tensor:
        return map_arms(objective, args, looped)

    def arm_outputs(*args: Any) -> Tensor:
        return map_arms(outputs, args, looped)

    arm_loss = vmap(template.loss)
    val_loss = torch.full((len(models),), math.nan)
    tensors = list(params.values())
    for epoch in range(trainer["max_epochs"]):
        template.train()
        train.sampler.set_epoch(epoch)
        for batch in train:
            grads = torch.autograd.grad(arm_step(params, buffers, l2, *batch).sum(), tensors)
            with torch.no_grad():
                for (name, p), g in zip(params.items(), grads, strict=True):
                    shape = shapes[name]
                    if any_decay and name in weight_names:
                        g = g + decay.view(shape) * p
                    if any_momentum:
                        g = buffers_sgd[name].mul_(momentum.view(shape)).add_(g)
                    p.sub_(lr.view(shape) * g)
        if (epoch + 1) % every == 0:
            template.eval()
            with torch.no_grad():
                total = torch.zeros(len(models), device=device)
                for *inputs, y in val:
                    total += arm_loss(arm_outputs(params, buffers, *inputs), y) * y.shape[1]
                val_loss = (total / val_data[0].shape[1]).cpu()
    return val_loss.tolist()


def mean_finite(values: list[float]) -> float:
    """The mean of the values that are not NaN (a diverged arm's)."""
    kept = [v for v in values if v == v]
    return round(sum(kept) / max(1, len(kept)), 4)


#: column -> (backend, pack mode, workers)
RUNNER_COLUMNS = {
    "unpacked": ("local", "off", 1),
    "packed": ("local", "auto", 1),
    "workers2": ("local", "off", 2),
    "ray_unpacked": ("ray", "off", 1),
    "ray_packed": ("ray", "auto", 1),
}
COLUMNS = ("bare", "vectorized", *RUNNER_COLUMNS)
TARGETS = {"packed_vs_unpacked": 5, "packed_vs_bare": 1, "packed_vs_vectorized": 1.5}


def load_suite(suite: str, seeds: list[int] | None, accelerator: str | None) -> SweepSpec:
    """A suite's spec, with its seeds replaced and every arm's ``trainer.accelerator`` set when given."""
    spec = load_spec(SUITES[suite])
    if seeds is not None:
        spec.seeds = seeds
    if accelerator is not None:  # appended to every arm's fit arguments (and equal in every pack's settings)
        spec.overrides = {**spec.overrides, "trainer.accelerator": accelerator}
    return spec


def measure(
    suite: str,
    seeds: list[int] | None,
    tmp: Path,
    columns: list[str],
    accelerator: str | None = None,
    profile: str | None = None,
) -> dict:
    spec = load_suite(suite, seeds, accelerator)
    pairs = spec.pairs()
    out: dict = {"runs": len(pairs)}
    if "bare" in columns:
        start = time.perf_counter()
        bare = [bare_arm([*spec.fit_args(arm, seed), *QUIET]) for arm, seed in pairs]
        out["bare_s"] = round(time.perf_counter() - start, 2)
        out["bare_mean_final_val_loss"] = mean_finite(bare)
    if "vectorized" in columns:
        seconds, vectorized = vectorized_suite(spec)
        out["vectorized_s"] = round(seconds, 2)
        out["vectorized_runs_per_min"] = round(len(pairs) / seconds * 60, 1)
        out["vectorized_mean_final_val_loss"] = mean_finite(vectorized)
        if "bare" in columns:  # the same arms, minibatches and updates: equal up to float rounding
            gaps = [abs(v - b) / max(abs(b), 1e-8) for v, b in zip(vectorized, bare, strict=True) if v == v and b == b]
            out["vectorized_vs_bare_max_rel_val_gap"] = float(f"{max(gaps, default=0.0):.3g}")
    for column in (c for c in RUNNER_COLUMNS if c in columns):
        backend, mode, workers = RUNNER_COLUMNS[column]
        uri = f"sqlite:///{tmp}/{suite}-{column}.db"
        SweepStore(uri).client.search_experiments()  # create the store outside the timing
        startup = 0.0
        if backend == "ray":  # a local Ray instance, started here so that its start-up is timed apart
            import ray

            start = time.perf_counter()
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
            startup = time.perf_counter() - start
        profiler = cProfile.Profile() if profile is not None and column == "packed" else None
        start = time.perf_counter()
        try:
            if profiler is not None:
                profiler.enable()
            result = run_sweep(spec, tracking_uri=uri, echo=lambda _: None, pack=mode, workers=workers, backend=backend)
        finally:
            if profiler is not None:
                profiler.disable()
            seconds = time.perf_counter() - start
            if backend == "ray":
                ray.shutdown()
        assert not result.failed, [o.error for o in result.failed]
        out[f"{column}_s"] = round(seconds, 2)
        out[f"{column}_runs_per_min"] = round(len(pairs) / seconds * 60, 1)
        if backend == "ray":
            out[f"{column}_with_ray_startup_s"] = round(seconds + startup, 2)
            out[f"{column}_ray_startup_s"] = round(startup, 2)
        if profiler is not None:
            out["packed_profiled"] = True  # packed_s includes the profiler's own cost
            write_profile(profiler, f"{suite}: packed column, {len(pairs)} runs, {seconds:.2f} s", profile, suite)
    if "unpacked_s" in out and "packed_s" in out:
        out["packed_vs_unpacked"] = round(out["unpacked_s"] / out["packed_s"], 2)
    if "bare_s" in out and "packed_s" in out:
        out["packed_vs_bare"] = round(out["bare_s"] / out["packed_s"], 2)
    if "vectorized_s" in out and "packed_s" in out:
        out["packed_vs_vectorized"] = round(out["packed_s"] / out["vectorized_s"], 2)
    if "bare_s" in out and "vectorized_s" in out:
        out["vectorized_vs_bare"] = round(out["bare_s"] / out["vectorized_s"], 2)
    if "bare_s" in out:  # what the runner adds per arm over a bare loop (negative: packing saves more than it adds)
        for column in (c for c in RUNNER_COLUMNS if f"{c}_s" in out):
            out[f"{column}_overhead_per_run_s"] = round((out[f"{column}_s"] - out["bare_s"]) / len(pairs), 3)
    return out


def write_profile(profiler: cProfile.Profile, title: str, path: str, suite: str, top: int = 25) -> None:
    """The ``top`` entries by cumulative time, then by own time, to stderr (``path`` "-") or appended to the
    file ``path``; with a file, the raw statistics go next to it too (``<path>.<suite>.pstats``, for pstats)."""
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    report = f"== profile: {title}\n{text.getvalue()}"
    if path == "-":
        sys.stderr.write(report)
    else:
        with open(path, "a", encoding="utf-8") as file:
            file.write(report)
        profiler.dump_stats(f"{path}.{suite}.pstats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=list(SUITES), default=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the spec's seeds")
    parser.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(COLUMNS), help="default: all")
    parser.add_argument(
        "--accelerator", default=None, help="set trainer.accelerator of every arm (e.g. gpu); default: the spec's"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="profile the packed column: top 25 by cumulative and by own time to stderr, or to PATH (+ .pstats)",
    )
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.profile not in (None, "-"):
        Path(args.profile).write_text("", encoding="utf-8")  # this run's profiles only
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            suite: measure(suite, args.seeds, Path(tmp), args.columns, args.accelerator, args.profile)
            for suite in args.suites
        }
    device = "cpu"
    if args.accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    print(
        json.dumps(
            {
                "benchmark": "ablation_throughput",
                "device": device,
                "torch_threads": torch.get_num_threads(),
                "suites": results,
                "targets": TARGETS,
            }
        )
    )


if __name__ == "__main__":
    main()
