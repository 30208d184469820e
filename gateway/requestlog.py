"""The in-memory request log: a bounded ring of finished requests, published in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
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


#: Requests are encoded together, this many at a time (see `RequestLog`).
BATCH = 64


def _encode(raws: list[RawRecord]) -> bytes:
    try:
        return dumps(raws)
    except ValueError:  # something marshal cannot write (a note, or a misbehaving header)
        return dumps([_plain(raw) for raw in raws])


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


def decode_record(item: tuple[bytes, int]) -> RequestRecord:
    """A kept request, from the log's compact form: (its batch, its place in the batch).
    A listener reads a published batch's requests in order, so the last batch decoded is
    remembered (one tuple, replaced whole: a reader in another thread sees a consistent one)."""
    global _last
    blob, index = item
    last = _last
    if last[0] is not blob:
        last = _last = (blob, loads(blob))
    return _make(last[1][index])


_last: tuple[bytes | None, Any] = (None, ())


class RequestLog:
    """Keeps the last `size` requests and emits them to listeners every `interval` seconds.

    Requests are kept `marshal`-encoded, `BATCH` to a bytes object, not as the tuples of
    fields, headers and strings they are made of (about 25 objects and 2 KB each, spread
    across the heap and walked by the garbage collector): a finished request is one append
    to the batch being filled, and the batch is encoded at once when full (or when read),
    which costs about half of encoding each alone and allocates one object instead of 64.
    Requests are decoded on the way out: `find`, `snapshot`, and the batches published to
    listeners (when a listener reads them).
    """

    def __init__(self, events: EventBus, size: int = 10000, interval: float = 0.25) -> None:
        self._size = size
        # Sealed batches, oldest first: (sequence number of its first request, count, blob).
        self._chunks: deque[tuple[int, int, bytes]] = deque()
        self._pending: list[RawRecord] = []  # the newest requests, not yet encoded
        self._total = 0  # requests ever added; the newest has sequence number _total - 1
        self._floor = 0  # requests before this sequence number are gone (a shrink dropped them)
        self._unsent = 0  # the newest requests not yet published
        self._events = events
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def add(self, raw: RawRecord) -> None:
        """Keep one finished request: a tuple of `RequestRecord`'s fields, in order."""
        pending = self._pending
        pending.append(raw)
        self._total += 1
        self._unsent += 1
        if len(pending) >= BATCH:
            self._seal()

    def _seal(self) -> None:
        """Encode the batch being filled, and drop batches wholly outside the kept window."""
        pending = self._pending
        if pending:
            self._pending = []
            self._chunks.append((self._total - len(pending), len(pending), _encode(pending)))
        oldest = self._oldest()
        chunks = self._chunks
        while chunks and chunks[0][0] + chunks[0][1] <= oldest:
            chunks.popleft()

    def _oldest(self) -> int:
        """The sequence number of the oldest kept request."""
        return max(self._floor, self._total - self._size)

    def __len__(self) -> int:
        return self._total - max(self._oldest(), 0)

    def _items(self, newest: int) -> list[tuple[bytes, int]]:
        """The newest `newest` kept requests as (batch, index), oldest first."""
        self._seal()
        first = self._total - min(newest, len(self))
        items: list[tuple[bytes, int]] = []
        for start, count, blob in self._chunks:  # on the loop: nothing appends meanwhile
            if start + count > first:
                items.extend((blob, i) for i in range(max(0, first - start), count))
        return items

    def snapshot(self) -> list[RequestRecord]:
        """Every kept request, oldest first. Safe from another thread (an export): it reads
        copies and changes nothing."""
        while True:
            chunks, pending, total = self._chunks.copy(), self._pending[:], self._total
            first = chunks[0][0] if chunks else total - len(pending)
            if (chunks[-1][0] + chunks[-1][1] if chunks else first) + len(pending) == total:
                break  # a consistent view (the loop did not seal in between)
        raws: list[RawRecord] = []
        for _, _, blob in chunks:
            raws.extend(loads(blob))
        raws.extend(pending)
        keep = total - max(self._floor, total - self._size, first)
        return list(map(_make, raws[len(raws) - keep:]))

    def encoded(self) -> list[tuple[bytes, int]]:
        """Every kept request in its compact form (`decode_record` reads one), oldest first:
        taken at once on the loop, cheap (the batches themselves are shared, never changed)."""
        return self._items(self._size)

    def find(self, request_id: str) -> RequestRecord | None:
        """The newest kept request with this id (a substring test first: marshal writes a
        string's bytes as they are, so only candidate batches are decoded)."""
        self._seal()
        needle = request_id.encode("utf-8", "surrogatepass")
        oldest = self._oldest()
        for start, count, blob in reversed(self._chunks):
            if needle in blob:
                raws = loads(blob)
                for i in range(count - 1, max(0, oldest - start) - 1, -1):
                    if raws[i][1] == request_id:
                        return _make(raws[i])
        return None

    def resize(self, size: int) -> None:
        if size != self._size:
            self._floor = max(self._floor, self._total - size)  # a shrink drops for good
            self._size = size
            self._unsent = min(self._unsent, len(self))
            self._seal()

    def flush(self) -> None:
        """Publish the requests added since the last flush (those still kept: at most the
        log's size, so the backlog is bounded even if no flusher runs)."""
        unsent = min(self._unsent, len(self))
        self._unsent = 0
        if unsent:
            self._events.emit(RequestsCompleted(encoded=self._items(unsent),
                                                decode=decode_record))

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
        return (f"<RequestLog kept={len(self)}/{self._size} batches={len(self._chunks)} "
                f"filling={len(self._pending)}>")
