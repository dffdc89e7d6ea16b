"""An in-memory stand-in for an arm's TrackingLogger: what a pack logs for one arm, by key and step."""

from __future__ import annotations

from typing import Any


class MemoryLogger:
    """Records ``log_metrics`` calls as ``{key: {step: value}}``, tags and how the run ended."""

    version = "in-memory"

    def __init__(self) -> None:
        self.metrics: dict[str, dict[int, float]] = {}
        self.tags: dict[str, Any] = {}
        self.status: str | None = "RUNNING"
        self.finalized: list[str] = []
        self.figures: list[str] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, {})[step or 0] = float(value)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.figures.append(artifact_file)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update(tags)

    def end(self, status: str) -> None:
        self.finalized.append(status)
        self.status = status

    def save(self) -> None:
        pass

    def flush(self) -> None:
        pass
