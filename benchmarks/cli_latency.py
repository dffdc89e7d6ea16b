"""How fast ``lit-d2l`` answers what needs no model: each subcommand's ``--help``, a missing config, a missing sweep.

Each command runs ``--repeat`` times in a fresh interpreter (the median is kept), beside two baselines:
``python -c pass`` (the interpreter's start) and ``python -c "import torch"`` (what a command that imports
torch pays before it can answer). The target is 1.5 s on an idle 2-core machine. Prints one JSON object last.

    python benchmarks/cli_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.5


def timed(argv: list[str], cwd: Path, repeat: int) -> tuple[float, int]:
    """The median wall time of ``argv`` over ``repeat`` runs, and its exit status."""
    times, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        code = subprocess.run(argv, cwd=cwd, capture_output=True).returncode
        times.append(time.perf_counter() - start)
    return statistics.median(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python, cli = [sys.executable], [sys.executable, "-m", "lit_d2l"]
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        store = f"sqlite:///{cwd}/mlruns/mlflow.db"
        cases = {
            "python -c pass": [*python, "-c", "pass"],
            "python -c 'import torch'": [*python, "-c", "import torch"],
            "lit-d2l --help": [*cli, "--help"],
            **{
                f"{command} --help": [*cli, command, "--help"]
                for command in ("fit", "validate", "test", "cv", "ablate", "report", "runs", "ui", "graph")
            },
            "fit --config missing.yaml": [*cli, "fit", "--config", "missing.yaml"],
            "ablate missing.yaml": [*cli, "ablate", "missing.yaml"],
            "report no-such-sweep": [*cli, "report", "no-such-sweep", "--tracking-uri", store],
        }
        results = {}
        for name, argv in cases.items():
            seconds, code = timed(argv, cwd, args.repeat)
            results[name] = {"seconds": round(seconds, 3), "exit": code}
            print(f"{name:<32} {seconds:6.2f} s  exit {code}", file=sys.stderr)
    answered = {k: v for k, v in results.items() if not k.startswith("python")}
    summary = {
        "benchmark": "cli_latency",
        "repeat": args.repeat,
        "target_s": TARGET_S,
        "over_target": sorted(k for k, v in answered.items() if v["seconds"] > TARGET_S),
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
