"""Bounded per-app buffers of output lines."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float
    app: str
    stream: str  # "stdout" | "stderr"
    line: str
    request_id: str | None = None


class LogBuffer:
    """The last `maxlen` lines of one app; the oldest fall off."""

    def __init__(self, app: str, maxlen: int = 2000) -> None:
        self.app = app
        self._lines: deque[LogLine] = deque(maxlen=maxlen)

    def append(self, line: LogLine) -> None:
        self._lines.append(line)

    def lines(self) -> list[LogLine]:
        return list(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"<LogBuffer {self.app!r} {len(self._lines)}/{self._lines.maxlen}>"


def merge_by_time(buffers: Iterable[LogBuffer]) -> list[LogLine]:
    """All lines of all buffers in time order (each buffer is already in order)."""
    return list(heapq.merge(*(b.lines() for b in buffers), key=lambda ln: ln.time))
