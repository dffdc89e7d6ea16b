"""A no-op profiler that costs nothing per hook.

Lightning wraps every hook call in ``trainer.profiler.profile(name)``. Its default
``PassThroughProfiler`` builds a generator-based context manager each time (~45 times a step);
this one hands back one shared ``nullcontext``. Pass ``--trainer.profiler simple`` (or any
Lightning profiler) to profile for real.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class NullProfiler(PassThroughProfiler):
    """Lightning's pass-through profiler without the per-call context manager."""

    def profile(self, action_name: str) -> Any:
        return _NOTHING
