"""What the step-0 lessons cost each shipped config that runs offline: the memory side pass
(``MemoryMeter``, D2L 5.3.3) and the computation graph (``ComputationGraphArtifact``, D2L 5.3.2), as a share
of the whole ``lit-d2l fit`` (parse, build, train, record in MLflow), on a fresh SQLite store each.

Each config is fitted once to warm the process up (imports, matplotlib's first figure), then ``--repeats``
times; the figures are the best repeat. The lessons' time is measured inside the fit, by timing the two
callbacks' hooks. Prints one JSON object last.

    python benchmarks/lesson_cost.py [--configs linear_regression polynomial ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lit_d2l.callbacks import ComputationGraphArtifact, MemoryMeter
from lit_d2l.fit.run import run_configured

REPO = Path(__file__).resolve().parents[1]
#: The shipped configs whose data needs no download.
OFFLINE = ("linear_regression", "polynomial", "weight_decay", "weight_decay_2nd_ed", "init_classification")
OFFLINE += ("digits_mlp",)
SPENT: dict[str, float] = {"memory": 0.0, "graph": 0.0}


def timed(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - start

    return wrapper


def fit_once(config: str, store: Path) -> tuple[float, float, float]:
    """(whole fit, memory lesson, graph lesson) in seconds."""
    SPENT.update(memory=0.0, graph=0.0)
    args = ["--config", str(REPO / "experiments" / f"{config}.yaml"), "--tracking.uri", f"sqlite:///{store}"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    start = time.perf_counter()
    run_configured("fit", args)
    return time.perf_counter() - start, SPENT["memory"], SPENT["graph"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(OFFLINE), choices=OFFLINE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    MemoryMeter.on_train_batch_start = timed("memory", MemoryMeter.on_train_batch_start)
    ComputationGraphArtifact.on_train_batch_start = timed("graph", ComputationGraphArtifact.on_train_batch_start)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        fit_once(args.configs[0], Path(tmp) / "warm-up.db")
        for config in args.configs:
            runs = [fit_once(config, Path(tmp) / f"{config}-{i}.db") for i in range(args.repeats)]
            fit, memory, graph = min(runs)
            results[config] = {
                "fit_s": round(fit, 3),
                "memory_s": round(memory, 4),
                "graph_s": round(graph, 4),
                "lessons_share": round((memory + graph) / fit, 4),
            }
    worst = max(r["lessons_share"] for r in results.values())
    print(
        json.dumps(
            {
                "benchmark": "lesson_cost",
                "torch_threads": torch.get_num_threads(),
                "configs": results,
                "worst_share": worst,
                "target_share": 0.05,
            }
        )
    )


if __name__ == "__main__":
    main()
