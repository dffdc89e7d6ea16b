"""How true a sweep's ETA is: run a shipped suite, time-stamp every line, and compare each printed ETA with
the time that was really left (to the last arm's line). Also shown: what the per-arm rule
(elapsed × arms left / arms done) would have printed on the same lines. The target is an
error within 25% once a quarter of the time has passed. Prints one JSON object last.

    python benchmarks/sweep_eta.py [--suite experiments/ablations/overfitting.yaml] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARM_LINE = re.compile(r"^arm (\d+)/(\d+) .*\(elapsed [\d:]+, ETA ([\d:]+)\)$")
TARGET = 0.25


def seconds(clock: str) -> int:
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(REPO / "experiments/ablations/overfitting.yaml"))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="sweep-eta-")
    command = [sys.executable, "-m", "lit_d2l", "ablate", args.suite, "--no-report", "--workers", str(args.workers)]
    command += ["--tracking-uri", f"sqlite:///{store}/mlflow.db"]
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(command, cwd=store, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
            print(f"{lines[-1][0]:7.1f} {lines[-1][1]}", flush=True)
    if proc.returncode != 0:
        sys.exit(f"the sweep failed (exit {proc.returncode})")
    arms = [(t, ARM_LINE.match(text)) for t, text in lines]
    arms = [(t, int(m[1]), int(m[2]), seconds(m[3])) for t, m in arms if m]
    sweep_start = next(t for t, text in lines if "parent run" in text)  # the start line: arms checked, packed
    end = arms[-1][0]
    rows = []
    for t, done, total, eta in arms:
        truth = end - t
        elapsed = t - sweep_start
        per_arm = elapsed * (total - done) / done
        share = elapsed / (end - sweep_start)
        rows.append(
            {
                "share": round(share, 3),
                "arms": f"{done}/{total}",
                "eta_s": eta,
                "truth_s": round(truth, 1),
                "error": round((eta - truth) / truth, 3) if truth > 1 else None,
                "per_arm_s": round(per_arm, 1),
                "per_arm_error": round((per_arm - truth) / truth, 3) if truth > 1 else None,
            }
        )
    late = [r for r in rows if r["share"] >= 0.25 and r["error"] is not None]
    worst = max((abs(r["error"]) for r in late), default=None)
    worst_per_arm = max((abs(r["per_arm_error"]) for r in late), default=None)
    for row in rows:
        print(row)
    print(
        json.dumps(
            {
                "suite": Path(args.suite).name,
                "wall_s": round(end - sweep_start, 1),
                "worst_error_after_a_quarter": worst,
                "worst_per_arm_error_after_a_quarter": worst_per_arm,
                "target": TARGET,
                "met": worst is not None and worst <= TARGET,
            }
        )
    )


if __name__ == "__main__":
    main()
