"""Per-route latency histograms, shown under ``extensions.monitoring`` in /metrics.

The gateway core already counts requests per app and in total; this adds the breakdown a
user asks for next: which route, behind which app, answering with which status class, how
fast. Series are keyed by ``(ctx.route, ctx.app, "2xx")`` read when the request finishes
(so routing decisions made further down the pipeline are seen), and bounded by
``max_routes``: a client walking random URLs through a catch-all cannot grow memory, because
routes are location patterns, and anything past the bound is folded into one "other" series.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.config.schema import MonitoringOptions
from gateway.context import get_context
from gateway.direct import PASS, Plan
from gateway.extensions.base import Extension
from gateway.metrics import LatencyHistogram
from gateway.services import Services
from gateway.types import ASGIApp, Message, Receive, Scope, Send

SeriesKey = tuple[str, str, str]  # route, app, status class
#: Requests recorded before they are counted (see `MonitoringExtension.fold`).
BATCH = 256
OTHER: SeriesKey = ("other", "", "")
_STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


class MonitoringExtension(Extension):
    name = "monitoring"
    Options = MonitoringOptions
    plans = True

    def __init__(self, app: ASGIApp, *, options: MonitoringOptions,
                 services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.enabled = options.enable_metrics
        self.max_routes = max(1, options.max_routes)
        self.series: dict[SeriesKey, LatencyHistogram] = {}
        self.requests = 0
        self.folded = 0
        #: Requests recorded and not yet counted: counted `BATCH` at a time, and whenever
        #: `metrics()` is read (so /metrics stays exact), as `MetricsRegistry` does.
        self._pending: list[tuple[SeriesKey, float]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = status or 500  # the gateway turns an escaped error into a 500
            raise
        finally:
            ctx = get_context(scope)
            # An event stream counts to its head (see RequestContext.latency_ms).
            self.record(scope, status, ctx.latency_ms() if ctx is not None
                        else (time.perf_counter() - started) * 1000.0)

    def plan(self, scope: Scope, plan: Plan) -> int:
        return PASS

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        if self.enabled:
            ctx = get_context(scope)
            assert ctx is not None  # the direct path always makes one
            self.record(scope, status, ctx.latency_ms())

    def record(self, scope: Scope, status: int, ms: float) -> None:
        ctx = get_context(scope)
        route = (ctx.route if ctx is not None else None) or "-"
        app = (ctx.app if ctx is not None else None) or ""
        cls = _STATUS_CLASSES[status // 100] if 0 <= status < 600 else "0xx"
        pending = self._pending
        pending.append(((route, app, cls), ms))
        if len(pending) >= BATCH:
            self.fold()

    def fold(self) -> None:
        """Count the requests recorded since the last fold."""
        pending, self._pending = self._pending, []
        by_key: dict[SeriesKey, list[float]] = {}
        for key, ms in pending:
            values = by_key.get(key)
            if values is None:
                by_key[key] = [ms]
            else:
                values.append(ms)
        series = self.series
        for key, values in by_key.items():
            hist = series.get(key)
            if hist is None:
                if len(series) >= self.max_routes:
                    key = OTHER
                    self.folded += len(values)
                hist = series.get(key)
                if hist is None:
                    hist = series[key] = LatencyHistogram()
            hist.observe_many(values)
        self.requests += len(pending)

    def metrics(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        self.fold()
        routes = [
            {"route": route, "app": app or None, "status": cls, "count": hist.total,
             "mean_ms": round(hist.sum_ms / hist.total, 3) if hist.total else 0.0,
             "latency_ms": hist.summary()}
            for (route, app, cls), hist in sorted(self.series.items())
        ]
        return {"enabled": True, "requests": self.requests, "series": len(self.series),
                "folded": self.folded, "routes": routes}

    def __repr__(self) -> str:
        return (f"<MonitoringExtension enabled={self.enabled} requests={self.requests} "
                f"series={len(self.series)}/{self.max_routes}>")
