"""The in-memory request log: a bounded ring of finished requests, published in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.events import EventBus, RequestsCompleted


class RequestRecord(NamedTuple):
    """One finished request.

    A tuple of atomic values (headers as tuples of bytes pairs, notes as pairs), so once it
    has survived one collection the garbage collector stops tracking it: ten thousand kept
    records then cost full collections nothing, which keeps the p99 latency flat.
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


class RequestLog:
    """Keeps the last `size` requests and emits them to listeners every `interval` seconds."""

    def __init__(self, events: EventBus, size: int = 10000, interval: float = 0.25) -> None:
        self.records: deque[RequestRecord] = deque(maxlen=size)
        self._pending: list[RequestRecord] = []
        self._events = events
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)
        if len(self._pending) < 5000:  # bounded even if no flusher runs
            self._pending.append(record)

    def find(self, request_id: str) -> RequestRecord | None:
        for rec in reversed(self.records):
            if rec.request_id == request_id:
                return rec
        return None

    def resize(self, size: int) -> None:
        if size != self.records.maxlen:
            self.records = deque(self.records, maxlen=size)

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = tuple(self._pending), []
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
        return f"<RequestLog kept={len(self.records)}/{self.records.maxlen}>"
