"""Monitoring: per-route, per-app, per-status-class latency, bounded, off when disabled."""

from __future__ import annotations

from gateway.config.schema import MonitoringOptions
from gateway.context import RequestContext, get_context
from gateway.extensions.monitoring import MonitoringExtension
from tests.support.extensions import call_asgi, default_handler, gateway, http_scope, member

MONITORING = '[[extensions]]\ntype = "monitoring"\n'


async def _routed(scope, receive, send):
    """Plays the router: names the route and app, as routing/orchestration do."""
    ctx = get_context(scope)
    ctx.route = "~^/api/" if scope["path"].startswith("/api/") else "__default__"
    ctx.app = "api" if scope["path"].startswith("/api/") else None
    await default_handler(scope, receive, send)


async def test_latency_by_route_app_and_status_class(tmp_path, monkeypatch) -> None:
    async with gateway(MONITORING, tmp_path, monkeypatch) as (served, upstream, client):
        upstream.handler = _routed
        for path in ("/api/a", "/api/b", "/api/c?status=404", "/index.html"):
            await client.get(path)
        stats = member(served, "monitoring").metrics()
        assert stats["enabled"] and stats["requests"] == 4 and stats["series"] == 3
        series = {(s["route"], s["app"], s["status"]): s for s in stats["routes"]}
        api_ok = series[("~^/api/", "api", "2xx")]
        assert api_ok["count"] == 2 and api_ok["latency_ms"]["p50"] > 0
        assert set(api_ok["latency_ms"]) == {"p50", "p90", "p99"}
        assert series[("~^/api/", "api", "4xx")]["count"] == 1
        assert series[("__default__", None, "2xx")]["count"] == 1
        body = (await client.get("/metrics")).json()
        assert body["extensions"]["monitoring"]["series"] == 3


async def test_disabled_records_nothing(tmp_path, monkeypatch) -> None:
    config = MONITORING + "[extensions.config]\nenable_metrics = false\n"
    async with gateway(config, tmp_path, monkeypatch) as (served, upstream, client):
        assert (await client.get("/x")).status_code == 200
        ext = member(served, "monitoring")
        assert ext.metrics() == {"enabled": False}
        assert ext.series == {} and ext.requests == 0


async def test_route_series_are_bounded() -> None:
    async def app(scope, receive, send):
        get_context(scope).route = scope["path"]  # a pathological router: a route per URL
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    ext = MonitoringExtension(app, options=MonitoringOptions(max_routes=10), services=None)
    for i in range(1000):
        scope = http_scope(f"/r/{i}")
        scope["pyserve"] = RequestContext(request_id=str(i))
        await call_asgi(ext, scope)
    stats = ext.metrics()
    assert stats["series"] <= 11 and stats["requests"] == 1000
    other = next(s for s in stats["routes"] if s["route"] == "other")
    assert other["count"] == stats["folded"] == 990


async def test_an_escaping_error_is_recorded_as_a_5xx() -> None:
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    ext = MonitoringExtension(app, options=MonitoringOptions(), services=None)
    try:
        await call_asgi(ext, http_scope("/err"))
    except RuntimeError:
        pass
    assert ext.metrics()["routes"][0]["status"] == "5xx"
