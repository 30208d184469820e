"""The in-memory request log: a bounded ring of finished requests, published in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, NamedTuple

from gateway.events import EventBus, RequestsCompleted


class RequestRecord(NamedTuple):
    """One finished request, as listeners and lookups see it.

    The log itself keeps each request as a plain tuple of the same fields (`RawRecord`) and
    makes these on the way out; see `RequestLog`.
    """

    time: float
    request_id: str
    method: str
    path: str
    query: str
    client: str
    status: int
    latency_ms: float
    app: str | None = None
    route: str | None = None
    upstream: str | None = None
    upstream_connect_ms: float | None = None
    upstream_ttfb_ms: float | None = None
    upstream_total_ms: float | None = None
    cache: str | None = None
    traceparent: str | None = None
    request_headers: Sequence[tuple[bytes, bytes]] = ()
    response_headers: Sequence[tuple[bytes, bytes]] = ()
    notes: Any = ()

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx" if self.status else "---"

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time, "request_id": self.request_id, "method": self.method,
            "path": self.path, "query": self.query, "client": self.client,
            "status": self.status, "latency_ms": round(self.latency_ms, 3), "app": self.app,
            "route": self.route, "upstream": self.upstream,
            "upstream_connect_ms": self.upstream_connect_ms,
            "upstream_ttfb_ms": self.upstream_ttfb_ms,
            "upstream_total_ms": self.upstream_total_ms, "cache": self.cache,
            "traceparent": self.traceparent,
            "request_headers": [(k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in self.request_headers],
            "response_headers": [(k.decode("latin-1"), v.decode("latin-1"))
                                 for k, v in self.response_headers],
            "notes": dict(self.notes),
        }


#: A `RequestRecord`'s fields as an exact tuple, which is how the log keeps them.
RawRecord = tuple[Any, ...]

_make = RequestRecord._make


class RequestLog:
    """Keeps the last `size` requests and emits them to listeners every `interval` seconds.

    The ring holds plain tuples of atomic values (headers as tuples of bytes pairs, notes as
    pairs). A collection stops tracking an exact tuple whose items are all untracked, so a
    kept request leaves the collector's sight within the collections it survives as a young
    object (one per level of nesting at most), and full collections no longer walk the log.
    A `RequestRecord` (a tuple subclass) is tracked for life: ten thousand of them in the
    ring doubled the length of every full collection (measured under load: 8 ms against
    4 ms without them).
    """

    def __init__(self, events: EventBus, size: int = 10000, interval: float = 0.25) -> None:
        self._ring: deque[RawRecord] = deque(maxlen=size)
        self._unsent = 0  # the newest records not yet published
        self._events = events
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def add(self, raw: RawRecord) -> None:
        """Keep one finished request: a tuple of `RequestRecord`'s fields, in order."""
        self._ring.append(raw)
        self._unsent += 1

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def size(self) -> int:
        return self._ring.maxlen or 0

    def snapshot(self) -> list[RequestRecord]:
        """Every kept request, oldest first."""
        return list(map(_make, self._ring.copy()))  # one C-level copy: appends may go on

    def find(self, request_id: str) -> RequestRecord | None:
        for raw in reversed(self._ring):
            if raw[1] == request_id:
                return _make(raw)
        return None

    def resize(self, size: int) -> None:
        if size != self._ring.maxlen:
            self._ring = deque(self._ring, maxlen=size)
            self._unsent = min(self._unsent, len(self._ring))

    def flush(self) -> None:
        """Publish the requests added since the last flush (those still kept: at most the
        ring's size, so the backlog is bounded even if no flusher runs)."""
        unsent = min(self._unsent, len(self._ring))
        self._unsent = 0
        if unsent:
            ring = self._ring
            batch = tuple(map(_make, islice(ring, len(ring) - unsent, None)))
            self._events.emit(RequestsCompleted(batch))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    def __repr__(self) -> str:
        return f"<RequestLog kept={len(self._ring)}/{self._ring.maxlen}>"
