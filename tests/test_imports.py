"""Importing lit-d2l changes no process-wide state: no matplotlib backend switch, no warnings filter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = """
import importlib, pkgutil, warnings
import matplotlib

def refuse(*args, **kwargs):
    raise AssertionError("matplotlib.use called while importing lit_d2l")

matplotlib.use = refuse
import lit_d2l

for module in pkgutil.walk_packages(lit_d2l.__path__, "lit_d2l."):
    importlib.import_module(module.name)
ours = [f for f in warnings.filters if f[1] is not None and "LeafSpec" in f[1].pattern]
assert not ours, ours
"""


@pytest.mark.slow
def test_importing_every_module_leaves_matplotlib_and_warnings_alone() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
