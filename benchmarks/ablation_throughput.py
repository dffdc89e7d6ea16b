"""Arms per minute of two D2L ablation suites: bare PyTorch loops, lit-d2l's runner one arm at a time,
with packed arms (issue 13), in two worker processes, and on a local Ray instance (issue 15), on the same
arms and data.

- **regularization** (``experiments/ablations/regularization.yaml``): weight decay λ ∈ {0, ..., 10} on
  HighDimLinearData (d = 200, 20 examples, batch 1, 100 epochs = 2,000 steps, val every 5 epochs):
  LinearRegressionScratch, squared loss + λ/2‖w‖², minibatch SGD.
- **initialization** (``experiments/ablations/initialization.yaml``): 5 init schemes x 3 activations x
  depth {2, 10, 30} MLPs on GaussianClusters (2,000 examples, batch 64, 5 epochs), per-layer
  diagnostics every 20 steps.

The bare loops draw the same minibatches (the DataModules' own in-memory iterator), take the same
SGD step and evaluate on the same schedule, recording nothing. Both runner columns record every arm
in MLflow (a fresh SQLite store each). The Ray columns start a local Ray instance first and time its
start-up apart (``ray_startup_s``); their run time includes starting Ray's worker processes. Prints one
JSON object last.

    python benchmarks/ablation_throughput.py [--suites regularization initialization] [--seeds 0] [--columns ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch

from lit_d2l.ablation.runner import run_sweep
from lit_d2l.ablation.spec import load_spec
from lit_d2l.fit_parser import parse_fit
from lit_d2l.models import built
from lit_d2l.tracking.sweeps import SweepStore

REPO = Path(__file__).resolve().parents[1]
SUITES = {name: REPO / "experiments" / "ablations" / f"{name}.yaml" for name in ("regularization", "initialization")}


def bare_arm(args: list[str]) -> float:
    """One arm as a plain PyTorch loop (model and data built from its config); returns its last val loss."""
    parsed = parse_fit(args)
    data, trainer = parsed.datamodule, parsed.trainer_kwargs
    model = built(parsed.model, data)
    net = model.net if hasattr(model, "net") else model
    params = list(model.parameters())
    weights = [p for p in params if p.ndim > 1]
    l2 = float(model.l2)
    optimizer = torch.optim.SGD(params, lr=model.lr, momentum=model.momentum)
    train, val = data.batches("train", shuffle=True), data.batches("val")
    every = trainer.get("check_val_every_n_epoch") or 1
    val_loss = float("nan")
    for epoch in range(trainer["max_epochs"]):
        train.sampler.set_epoch(epoch)
        for *inputs, y in train:
            loss = model.loss(net(*inputs), y)
            if l2:
                loss = loss + l2 / 2 * sum((w**2).sum() for w in weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % every == 0:
            with torch.no_grad():
                total = sum(model.loss(net(*inputs), y) * len(y) for *inputs, y in val)
                val_loss = float(total / len(data.splits["val"][0]))
    return val_loss


#: column -> (backend, pack mode, workers)
RUNNER_COLUMNS = {
    "unpacked": ("local", "off", 1),
    "packed": ("local", "auto", 1),
    "workers2": ("local", "off", 2),
    "ray_unpacked": ("ray", "off", 1),
    "ray_packed": ("ray", "auto", 1),
}
COLUMNS = ("bare", *RUNNER_COLUMNS)


def measure(suite: str, seeds: list[int] | None, tmp: Path, columns: list[str]) -> dict:
    spec = load_spec(SUITES[suite])
    if seeds is not None:
        spec.seeds = seeds
    pairs = spec.pairs()
    out: dict = {"runs": len(pairs)}
    if "bare" in columns:
        quiet = ["--trainer.logger", "false"]
        start = time.perf_counter()
        bare = [bare_arm([*spec.fit_args(arm, seed), *quiet]) for arm, seed in pairs]
        out["bare_s"] = round(time.perf_counter() - start, 2)
        out["bare_mean_final_val_loss"] = round(sum(v for v in bare if v == v) / max(1, sum(v == v for v in bare)), 4)
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
        start = time.perf_counter()
        try:
            result = run_sweep(spec, tracking_uri=uri, echo=lambda _: None, pack=mode, workers=workers, backend=backend)
        finally:
            seconds = time.perf_counter() - start
            if backend == "ray":
                ray.shutdown()
        assert not result.failed, [o.error for o in result.failed]
        out[f"{column}_s"] = round(seconds, 2)
        out[f"{column}_runs_per_min"] = round(len(pairs) / seconds * 60, 1)
        if backend == "ray":
            out[f"{column}_with_ray_startup_s"] = round(seconds + startup, 2)
            out[f"{column}_ray_startup_s"] = round(startup, 2)
    if "unpacked_s" in out and "packed_s" in out:
        out["packed_vs_unpacked"] = round(out["unpacked_s"] / out["packed_s"], 2)
    if "bare_s" in out and "packed_s" in out:
        out["packed_vs_bare"] = round(out["bare_s"] / out["packed_s"], 2)
    if "bare_s" in out:  # what the runner adds per arm over a bare loop (negative: packing saves more than it adds)
        for column in (c for c in RUNNER_COLUMNS if f"{c}_s" in out):
            out[f"{column}_overhead_per_run_s"] = round((out[f"{column}_s"] - out["bare_s"]) / len(pairs), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=list(SUITES), default=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the spec's seeds")
    parser.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(COLUMNS), help="default: all")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        results = {suite: measure(suite, args.seeds, Path(tmp), args.columns) for suite in args.suites}
    print(
        json.dumps(
            {
                "benchmark": "ablation_throughput",
                "torch_threads": torch.get_num_threads(),
                "suites": results,
                "targets": {"packed_vs_unpacked": 5, "packed_vs_bare": 1},
            }
        )
    )


if __name__ == "__main__":
    main()
