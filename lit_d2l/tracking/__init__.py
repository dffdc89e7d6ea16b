"""MLflow tracking: the only package of lit_d2l that talks to MLflow (others name its types for type checks only).

:class:`TrackingLogger` is imported on first use (a module ``__getattr__``): it is a Lightning logger, so
importing it loads torch and Lightning (~5 s), which the store's checks and the CLI's help do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lit_d2l.tracking.store import DEFAULT_TRACKING_URI, check_store, resolve_tracking_uri
from lit_d2l.tracking.write_errors import storage_error

if TYPE_CHECKING:
    from lit_d2l.tracking.logger import TrackingLogger

__all__ = ["DEFAULT_TRACKING_URI", "TrackingLogger", "check_store", "resolve_tracking_uri", "storage_error"]


def __getattr__(name: str) -> Any:
    if name == "TrackingLogger":
        from lit_d2l.tracking.logger import TrackingLogger

        return TrackingLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
