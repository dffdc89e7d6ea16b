"""Help, and errors that need no model, answer before torch and Lightning are imported (~5 s of imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# Runs every case in one fresh interpreter, in order; prints, for each, its exit status and whether torch,
# Lightning or MLflow (~1 s) was loaded by then (the first case that loads them is the one at fault).
SCRIPT = """
import contextlib, io, json, sys
from lit_d2l.cli.main import main

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    heavy = sorted(name for name in ("torch", "lightning", "mlflow") if name in sys.modules)
    results.append({"argv": argv, "code": code, "heavy": heavy, "err": err.getvalue()[:2000]})
print(json.dumps(results))
"""

COMMANDS = ("fit", "validate", "test", "cv", "ablate", "report", "runs", "ui", "graph", "plot-activations")


def test_help_and_missing_files_and_sweeps_answer_without_torch(tmp_path, tracking_uri) -> None:
    cases = [["--help"], *([command, "--help"] for command in COMMANDS)]
    errors = [
        ["fit", "--config", "missing.yaml"],
        ["fit", "--config=missing.yaml", "--trainer.max_epochs", "1"],
        ["validate", "-c", "missing.yaml", "--ckpt_path", "x.ckpt"],
        ["cv", "--config", "missing.yaml", "--folds", "3"],
        ["graph", "--config", "missing.yaml"],
        ["ablate", "missing.yaml"],
        ["ablate", "missing.yaml", "--dry-run"],
        ["report", "no-such-sweep", "--tracking-uri", tracking_uri],
        ["report", "no-such-sweep", "--select", "val/loss", "--tracking-uri", tracking_uri],
        ["report", "no-such-sweep", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases + errors)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "none.db").exists(), "a report of a store that does not exist made one"
    results = json.loads(done.stdout.splitlines()[-1])
    for result in results:
        if result["argv"] in errors:  # a store's errors may need MLflow, never torch or Lightning
            assert set(result["heavy"]) <= {"mlflow"}, f"{result['argv']} imported {result['heavy']}"
        else:  # help needs none of them
            assert result["heavy"] == [], f"{result['argv']} imported {result['heavy']}"
        if result["argv"] in errors:
            assert result["code"] == 2, result
            assert result["err"].count("lit-d2l: error:") == 1 and "Traceback" not in result["err"], result
        else:
            assert result["code"] == 0, result
