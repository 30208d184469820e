"""`/health` and `/metrics`, answered by the gateway whatever the extensions are."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from gateway.orchestrator.states import AppState
from gateway.responses import send_plain
from gateway.snapshots import MOUNTED, AppMetrics, GatewayMetrics, Latency, MetricsSnapshot
from gateway.types import Scope, Send

if TYPE_CHECKING:
    from gateway.pipeline import GatewayApp


def metrics_snapshot(gateway: GatewayApp) -> MetricsSnapshot:
    services = gateway.services
    reg = services.metrics
    apps: dict[str, AppMetrics] = {}
    orch = services.orchestrator
    if orch is not None:
        for s in orch.snapshot():
            apps[s["name"]] = AppMetrics(
                name=s["name"], state=AppState(s["state"]), path=s["path"], pid=s["pid"],
                port=s["port"], backend=s["backend"], restarts=s["restarts"],
                uptime_s=s["uptime_s"], cpu_percent=s["cpu_percent"], rss_bytes=s["rss_bytes"],
                health=s["health"], health_check=s["health_check"],
                last_error=s["last_error"], last_error_at=s["last_error_at"],
                pending=s["pending"], latency_ms=Latency(),
                requests_per_s=0.0)
    for name, counter in reg.apps.items():
        apps[name] = replace(
            apps.get(name) or AppMetrics(name=name, state=MOUNTED),
            requests=counter.requests, errors=counter.errors,
            latency_ms=Latency.of(counter.latency.summary()),
            requests_per_s=reg.app_rates[name].rate())
    return MetricsSnapshot(
        gateway=GatewayMetrics(
            uptime_s=round(reg.uptime(), 3), requests=reg.gateway.requests,
            errors=reg.gateway.errors, backend=services.backend(),
            apps_backend=services.app_backend(),
            requests_per_s=reg.gateway_rate.rate(),
            latency_ms=Latency.of(reg.gateway.latency.summary()),
            by_status=dict(reg.gateway.by_status)),
        apps=apps,
        extensions=gateway.pipeline.metrics(),
    )


def prometheus_text(gateway: GatewayApp, snap: MetricsSnapshot) -> str:
    reg = gateway.services.metrics
    lines = [
        "# HELP pyserve_uptime_seconds Seconds since the gateway started.",
        "# TYPE pyserve_uptime_seconds gauge",
        f"pyserve_uptime_seconds {snap.gateway.uptime_s}",
        "# HELP pyserve_backend_info What serves the gateway and the apps that inherit it.",
        "# TYPE pyserve_backend_info gauge",
        f'pyserve_backend_info{{gateway="{snap.gateway.backend}",'
        f'apps="{snap.gateway.apps_backend}"}} 1',
        "# HELP pyserve_requests_total Requests answered, by app and status class.",
        "# TYPE pyserve_requests_total counter",
    ]
    for cls, n in sorted(reg.gateway.by_status.items()):
        lines.append(f'pyserve_requests_total{{app="",status="{cls}"}} {n}')
    for app, counter in sorted(reg.apps.items()):
        for cls, n in sorted(counter.by_status.items()):
            lines.append(f'pyserve_requests_total{{app="{app}",status="{cls}"}} {n}')
    lines += ["# HELP pyserve_request_duration_ms Request latency in milliseconds.",
              "# TYPE pyserve_request_duration_ms histogram"]
    series = [("", reg.gateway)] + sorted(reg.apps.items())
    for app, counter in series:
        for bound, acc in counter.latency.buckets():
            le = "+Inf" if bound == float("inf") else f"{bound:.4g}"
            lines.append(f'pyserve_request_duration_ms_bucket{{app="{app}",le="{le}"}} {acc}')
        lines.append(f'pyserve_request_duration_ms_sum{{app="{app}"}} '
                     f'{counter.latency.sum_ms:.3f}')
        lines.append(f'pyserve_request_duration_ms_count{{app="{app}"}} {counter.latency.total}')
    lines += ["# HELP pyserve_app_up 1 when the app is healthy.", "# TYPE pyserve_app_up gauge"]
    for app, entry in sorted(snap.apps.items()):
        up = 1 if entry.state in (AppState.HEALTHY, MOUNTED) else 0
        lines.append(f'pyserve_app_up{{app="{app}",state="{entry.state}"}} {up}')
        if not entry.mounted:
            lines.append(f'pyserve_app_restarts_total{{app="{app}"}} {entry.restarts}')
        if entry.rss_bytes is not None:
            lines.append(f'pyserve_app_rss_bytes{{app="{app}"}} {entry.rss_bytes}')
    for ext, values in sorted(snap.extensions.items()):
        for key, value in sorted(values.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                lines.append(f'pyserve_extension_{key}{{extension="{ext}"}} {value}')
    return "\n".join(lines) + "\n"


async def handle_builtin(scope: Scope, send: Send, gateway: GatewayApp) -> None:
    head = scope.get("method") == "HEAD"
    if scope["path"] == "/health":
        await send_plain(send, 200, b"OK", head=head)
        return
    snap = metrics_snapshot(gateway)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
    if query.get("format", [""])[0] == "prometheus" or (
            b"text/plain" in accept and b"application/json" not in accept):
        await send_plain(send, 200, prometheus_text(gateway, snap),
                         content_type=b"text/plain; version=0.0.4; charset=utf-8", head=head)
        return
    await send_plain(send, 200, json.dumps(snap.to_json(), default=str), head=head,
                     content_type=b"application/json")
