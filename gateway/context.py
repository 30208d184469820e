"""Per-request context carried in the ASGI scope under ``scope["pyserve"]``.

The gateway core creates it; extensions and the proxy fill in what they decide (route, app,
cache result, upstream timings) so the request log and the trace view can show it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.types import Scope

SCOPE_KEY = "pyserve"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    traceparent: str | None = None
    started: float = field(default_factory=time.perf_counter)
    wall_time: float = field(default_factory=time.time)
    route: str | None = None
    app: str | None = None
    upstream: str | None = None
    upstream_connect_ms: float | None = None
    upstream_ttfb_ms: float | None = None
    upstream_total_ms: float | None = None
    cache: str | None = None
    status: int = 0
    response_headers: Sequence[tuple[bytes, bytes]] = ()  # set when the response starts
    notes: dict[str, Any] = field(default_factory=dict)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


def get_context(scope: Scope) -> RequestContext | None:
    return scope.get(SCOPE_KEY)
