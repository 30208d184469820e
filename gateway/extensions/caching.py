"""A shared response cache in front of the rest of the pipeline.

Only what a shared HTTP cache may keep is kept (RFC 9111 in its simple form): GET responses
with status 200 whose ``Cache-Control`` allows storing, for ``min(cache_ttl, s-maxage or
max-age)`` seconds, one variant per value of the request headers named in ``Vary``. HEAD is
answered from a cached GET. Memory is bounded by entry count and bytes (LRU), and a response
larger than ``max_entry_bytes`` streams straight through: the copy is abandoned as soon as it
grows past the limit, so a big download never sits in memory.

Concurrent misses for one key are coalesced ("single flight"): the first goes to the app, the
others wait for its result up to ``single_flight_timeout`` and ask the app themselves if it
could not be cached, so a burst on a cold key costs the app one request, not hundreds.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.config.schema import CachingOptions
from gateway.context import get_context
from gateway.extensions._http import header_value, joined_values, parse_directives
from gateway.extensions.base import Extension
from gateway.services import Services
from gateway.types import ASGIApp, Headers, Message, Receive, Scope, Send

BaseKey = tuple[bytes, str, bytes]  # host, path, query string
CacheKey = tuple[BaseKey, tuple[bytes, ...]]  # + the values of the Vary'd request headers

_REFUSE_STORE = ("no-store", "private", "no-cache")
# Not kept with an entry: recomputed on every hit, or meaningless for another client.
_NOT_STORED = frozenset((b"content-length", b"age", b"x-cache", b"connection", b"keep-alive",
                         b"transfer-encoding", b"x-request-id", b"traceparent"))
_ENTRY_OVERHEAD = 200  # rough bytes of bookkeeping per entry, so tiny bodies still count


@dataclass(slots=True)
class CacheEntry:
    status: int
    headers: Headers
    body: bytes
    stored_at: float
    expires_at: float
    size: int
    etag: bytes | None


class ResponseStore:
    """The bounded LRU of entries and the Vary header names learnt per URL."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max(1, max_entries)
        self.max_bytes = max(1, max_bytes)
        self.entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.vary: OrderedDict[BaseKey, tuple[bytes, ...]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0
        self.expired = 0

    def key(self, base: BaseKey, request_headers: Headers) -> CacheKey:
        names = self.vary.get(base)
        if not names:
            return (base, ())
        return (base, tuple(joined_values(request_headers, n) or b"" for n in names))

    def get(self, key: CacheKey, now: float) -> CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._remove(key)
            self.expired += 1
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, base: BaseKey, names: tuple[bytes, ...], request_headers: Headers,
            entry: CacheEntry) -> None:
        if entry.size > self.max_bytes:
            return
        if names:
            self.vary[base] = names
            self.vary.move_to_end(base)
            while len(self.vary) > self.max_entries:
                self.vary.popitem(last=False)
        else:
            self.vary.pop(base, None)
        key = self.key(base, request_headers)
        if key in self.entries:
            self._remove(key)
        while self.entries and (len(self.entries) >= self.max_entries
                                or self.bytes + entry.size > self.max_bytes):
            self._remove(next(iter(self.entries)))
            self.evictions += 1
        self.entries[key] = entry
        self.bytes += entry.size

    def _remove(self, key: CacheKey) -> None:
        self.bytes -= self.entries.pop(key).size

    def __repr__(self) -> str:
        return (f"<ResponseStore entries={len(self.entries)}/{self.max_entries} "
                f"bytes={self.bytes}/{self.max_bytes} evictions={self.evictions}>")


def _storable_for(status: int, headers: Headers, ttl: float,
                  max_entry_bytes: int) -> tuple[float, tuple[bytes, ...]] | str:
    """(seconds to keep, Vary names) for a response, or why it is not kept."""
    if status != 200:
        return f"status {status}"
    cc = parse_directives(joined_values(headers, b"cache-control"))
    for directive in _REFUSE_STORE:
        if directive in cc:
            return f"Cache-Control: {directive}"
    for directive in ("s-maxage", "max-age"):
        if directive in cc:
            try:
                ttl = min(ttl, float(cc[directive] or 0))
            except ValueError:
                return f"bad {directive}"
            break
    if ttl <= 0:
        return "max-age=0"
    if header_value(headers, b"set-cookie") is not None:
        return "Set-Cookie"
    ctype = header_value(headers, b"content-type") or b""
    if ctype.lower().startswith(b"text/event-stream"):
        return "event stream"
    length = header_value(headers, b"content-length")
    if length is not None and length.isdigit() and int(length) > max_entry_bytes:
        return "too large"
    vary = joined_values(headers, b"vary")
    names: tuple[bytes, ...] = ()
    if vary:
        names = tuple(sorted({n.strip().lower() for n in vary.split(b",") if n.strip()}))
        if b"*" in names:
            return "Vary: *"
    return ttl, names


def _etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    if if_none_match.strip() == b"*":
        return True
    weak = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == weak for tag in if_none_match.split(b","))


class CachingExtension(Extension):
    name = "caching"
    Options = CachingOptions

    def __init__(self, app: ASGIApp, *, options: CachingOptions, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        patterns = list(options.cache_patterns)
        self._match_all = "*" in patterns
        self._pattern = re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")
        self.ttl = float(options.cache_ttl)
        self.max_entry_bytes = max(0, options.max_entry_bytes)
        self.flight_timeout = float(options.single_flight_timeout)
        self.store = ResponseStore(options.max_entries, options.max_bytes)
        self._inflight: dict[CacheKey, asyncio.Future[None]] = {}
        self.waiting = 0
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.uncacheable = 0

    def applies_to(self, path: str) -> bool:
        return self._match_all or self._pattern.match(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") \
                or not self.applies_to(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        host = b""
        for name, value in headers:
            if name == b"authorization":  # personal answers are not for a shared cache
                await self.app(scope, receive, send)
                return
            if name == b"cache-control" and b"no-store" in value.lower():
                await self.app(scope, receive, send)
                return
            if name == b"host":
                host = value
        base: BaseKey = (host.lower(), scope["path"], scope.get("query_string", b""))
        key = self.store.key(base, headers)
        entry = self.store.get(key, time.monotonic())
        if entry is not None:
            self.hits += 1
            await self._send_hit(scope, send, entry)
            return
        if scope["method"] == "HEAD":  # a HEAD response has no body to keep
            await self._fetch(scope, receive, send, base, store=False)
            return

        flight = self._inflight.get(key)
        if flight is not None:
            if await self._follow(flight):
                entry = self.store.get(self.store.key(base, headers), time.monotonic())
                if entry is not None:
                    self.hits += 1
                    self.coalesced += 1
                    await self._send_hit(scope, send, entry)
                    return
            await self._fetch(scope, receive, send, base, store=True)
            return

        flight = asyncio.get_running_loop().create_future()
        self._inflight[key] = flight
        try:
            await self._fetch(scope, receive, send, base, store=True)
        finally:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            flight.set_result(None)

    async def _follow(self, flight: asyncio.Future[None]) -> bool:
        """Wait for the leader of this key; False when it took too long."""
        self.waiting += 1
        try:
            async with asyncio.timeout(self.flight_timeout):
                await asyncio.shield(flight)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    async def _send_hit(self, scope: Scope, send: Send, entry: CacheEntry) -> None:
        ctx = get_context(scope)
        if ctx is not None:
            ctx.cache = "HIT"
        now = time.monotonic()
        headers = list(entry.headers)
        headers.append((b"age", str(int(now - entry.stored_at)).encode()))
        headers.append((b"x-cache", b"HIT"))
        inm = header_value(scope["headers"], b"if-none-match")
        if inm is not None and entry.etag is not None and _etag_matches(inm, entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(entry.body)).encode()))
        await send({"type": "http.response.start", "status": entry.status,
                    "headers": headers})
        body = b"" if scope["method"] == "HEAD" else entry.body
        await send({"type": "http.response.body", "body": body})

    async def _fetch(self, scope: Scope, receive: Receive, send: Send, base: BaseKey, *,
                     store: bool) -> None:
        """Ask the app, streaming its answer through while keeping a copy if it may be kept."""
        self.misses += 1
        ctx = get_context(scope)
        if ctx is not None:
            ctx.cache = "MISS"
        chunks: list[bytes] | None = None
        size = 0
        start: tuple[int, Headers] | None = None
        policy: tuple[float, tuple[bytes, ...]] | str = "HEAD"

        async def send_and_keep(message: Message) -> None:
            nonlocal chunks, size, start, policy
            mtype = message["type"]
            if mtype == "http.response.start":
                headers = list(message.get("headers") or ())
                if store:
                    policy = _storable_for(message["status"], headers, self.ttl,
                                           self.max_entry_bytes)
                    if isinstance(policy, tuple):
                        # A snapshot: outer extensions edit this message's headers later.
                        chunks, start = [], (message["status"], headers[:])
                    else:
                        self.uncacheable += 1
                        if ctx is not None:
                            ctx.notes["cache"] = f"not stored: {policy}"
                headers.append((b"x-cache", b"MISS"))
                message["headers"] = headers
            elif mtype == "http.response.body" and chunks is not None:
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_entry_bytes:
                    chunks = None  # too big to keep: stop copying, keep streaming
                    self.uncacheable += 1
                    if ctx is not None:
                        ctx.notes["cache"] = "not stored: too large"
                else:
                    if body:
                        chunks.append(body)
                    if not message.get("more_body", False):
                        self._keep(scope, base, start, chunks, size, policy)
                        chunks = None
            await send(message)

        await self.app(scope, receive, send_and_keep)

    def _keep(self, scope: Scope, base: BaseKey, start: tuple[int, Headers] | None,
              chunks: list[bytes], size: int, policy: Any) -> None:
        if start is None or not isinstance(policy, tuple):
            return
        ttl, names = policy
        status, raw_headers = start
        headers = [(k, v) for k, v in raw_headers if k not in _NOT_STORED]
        now = time.monotonic()
        body = b"".join(chunks)
        entry = CacheEntry(
            status=status, headers=headers, body=body, stored_at=now,
            expires_at=now + ttl, etag=header_value(headers, b"etag"),
            size=size + sum(len(k) + len(v) for k, v in headers) + _ENTRY_OVERHEAD)
        self.store.put(base, names, scope["headers"], entry)

    def metrics(self) -> dict[str, Any]:
        store = self.store
        return {"hits": self.hits, "misses": self.misses, "evictions": store.evictions,
                "entries": len(store.entries), "bytes": store.bytes,
                "expired": store.expired, "coalesced": self.coalesced,
                "uncacheable": self.uncacheable, "in_flight": len(self._inflight)}

    def __repr__(self) -> str:
        return (f"<CachingExtension hits={self.hits} misses={self.misses} "
                f"in_flight={len(self._inflight)} {self.store!r}>")
