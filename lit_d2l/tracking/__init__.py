"""MLflow tracking: the only package of lit_d2l that imports mlflow."""

from lit_d2l.tracking.logger import TrackingLogger
from lit_d2l.tracking.store import DEFAULT_TRACKING_URI, check_store, resolve_tracking_uri
from lit_d2l.tracking.write_errors import storage_error

__all__ = ["DEFAULT_TRACKING_URI", "TrackingLogger", "check_store", "resolve_tracking_uri", "storage_error"]
