"""What this process prints: times as ``m:ss``, and final lines that start on their own line."""

from __future__ import annotations

import sys
from typing import Any, TextIO


def clock_time(seconds: float) -> str:
    """``m:ss`` below an hour, else ``h:mm:ss``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineEnds:
    """A text stream (stdout) that remembers whether what was written last ended its line: a progress bar
    (Lightning's, redrawn after ``\r``) leaves it open, and a message printed then would be glued to it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.line_open = False

    def write(self, text: str) -> int:
        if text:
            self.line_open = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def own_line(stream: TextIO | None = None) -> None:
    """Before a final message: stdout written out, and its open line (a progress bar's) ended."""
    stream = stream or sys.stdout
    if isinstance(stream, LineEnds) and stream.line_open:
        stream.write("\n")
    stream.flush()
