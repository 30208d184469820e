"""Per-request context carried in the ASGI scope under ``scope["pyserve"]``.

The gateway core creates it; extensions and the proxy fill in what they decide (route, app,
cache result, upstream timings) so the request log and the trace view can show it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from gateway.types import Scope

SCOPE_KEY = "pyserve"


class RequestContext:
    """What one request did, filled in as it goes (a plain slotted class: one is made per
    request, and a dataclass with default factories costs twice as much to create)."""

    __slots__ = ("request_id", "traceparent", "started", "wall_time", "route", "app",
                 "upstream", "upstream_connect_ms", "upstream_ttfb_ms", "upstream_total_ms",
                 "cache", "status", "response_headers", "notes", "head_ms")

    def __init__(self, request_id: str, traceparent: str | None = None) -> None:
        self.request_id = request_id
        self.traceparent = traceparent
        self.started = time.perf_counter()
        self.wall_time = time.time()
        self.route: str | None = None
        self.app: str | None = None
        #: The upstream's "host:port" (`proxy.headers.upstream_address`), set by the
        #: transport that talks to it.
        self.upstream: str | None = None
        self.upstream_connect_ms: float | None = None
        self.upstream_ttfb_ms: float | None = None
        self.upstream_total_ms: float | None = None
        self.cache: str | None = None
        self.status = 0
        self.response_headers: Sequence[tuple[bytes, bytes]] = ()  # set when it starts
        self.notes: dict[str, Any] = {}
        #: Set when the response is a stream that stays open (a WebSocket session, an event
        #: stream): the milliseconds to its head, which is what its latency is.
        self.head_ms: float | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def latency_ms(self) -> float:
        """The request's latency, as every figure reports it: to the end of the response,
        or to the response head for a session that stays open (a WebSocket, an event
        stream), which would otherwise count for as long as the client stays."""
        return self.head_ms if self.head_ms is not None else self.elapsed_ms()

    def __repr__(self) -> str:
        return (f"<RequestContext {self.request_id} status={self.status} route={self.route!r}"
                f" app={self.app!r} upstream={self.upstream!r}>")


def is_event_stream(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value[:17].lower() == b"text/event-stream"
    return False


def get_context(scope: Scope) -> RequestContext | None:
    return scope.get(SCOPE_KEY)
