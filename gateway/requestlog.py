"""The in-memory request log: a bounded ring of finished requests, published in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from itertools import islice
from marshal import dumps, loads
from typing import Any, NamedTuple

from gateway.events import EventBus, RequestsCompleted


class RequestRecord(NamedTuple):
    """One finished request, as listeners and lookups see it (the log keeps it encoded;
    see `RequestLog`)."""

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


#: A `RequestRecord`'s fields as a plain tuple: what the gateway hands to `RequestLog.add`.
RawRecord = tuple[Any, ...]

_make = RequestRecord._make


def _encode(raw: RawRecord) -> bytes:
    try:
        return dumps(raw)
    except ValueError:  # something marshal cannot write (a note, or a misbehaving header)
        return dumps(_plain(raw))


def _plain(value: Any) -> Any:
    """`value` with anything marshal cannot write replaced by its `repr` (rare path)."""
    if value is None or isinstance(value, str | bytes | int | float):
        return value
    if isinstance(value, tuple):
        return tuple(map(_plain, value))
    if isinstance(value, list):
        return list(map(_plain, value))
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return repr(value)


def decode_record(blob: bytes) -> RequestRecord:
    """A kept request, from the log's compact form."""
    return _make(loads(blob))


class RequestLog:
    """Keeps the last `size` requests and emits them to listeners every `interval` seconds.

    Each request is kept as one `marshal`-encoded bytes object, not as the tuple of fields,
    headers and strings it is made of (a few dozen objects spread across the heap): ten
    thousand of those, walked by the cache and by every full garbage collection, made every
    request of a busy gateway slower, and encoding costs far less than that (the measurement
    is in bench/README.md). Bytes are also invisible to the garbage collector. Requests are
    decoded on the way out: `find`, `snapshot`, and the batches published to listeners (when
    a listener reads them).
    """

    def __init__(self, events: EventBus, size: int = 10000, interval: float = 0.25) -> None:
        self._ring: deque[bytes] = deque(maxlen=size)
        self._unsent = 0  # the newest requests not yet published
        self._events = events
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def add(self, raw: RawRecord) -> None:
        """Keep one finished request: a tuple of `RequestRecord`'s fields, in order."""
        self._ring.append(_encode(raw))
        self._unsent += 1

    def __len__(self) -> int:
        return len(self._ring)

    def snapshot(self) -> list[RequestRecord]:
        """Every kept request, oldest first."""
        return list(map(decode_record, self._ring.copy()))  # C-level copy: appends may go on

    def encoded(self) -> tuple[bytes, ...]:
        """Every kept request in its compact form (`decode_record` reads one), oldest first:
        a copy taken at once, cheap enough for the loop."""
        return tuple(self._ring)

    def find(self, request_id: str) -> RequestRecord | None:
        """The newest kept request with this id (a substring test first: marshal writes a
        string's bytes as they are, so only candidates are decoded)."""
        needle = request_id.encode("utf-8", "surrogatepass")
        for blob in reversed(self._ring):  # on the loop: nothing appends meanwhile
            if needle in blob:
                record = decode_record(blob)
                if record.request_id == request_id:
                    return record
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
            batch = tuple(islice(ring, len(ring) - unsent, None))
            self._events.emit(RequestsCompleted(encoded=batch, decode=decode_record))

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
