"""The engine's typed reports: `/metrics` written from one serialiser in the shape SPEC §3
gives, and an export that writes what was kept when it was asked for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.engine import Engine
from gateway.orchestrator.states import AppState
from gateway.snapshots import MOUNTED, AppMetrics, GatewayMetrics, Latency, MetricsSnapshot
from tests.support.harness import free_port


def test_metrics_json_keeps_the_documented_shape() -> None:
    snap = MetricsSnapshot(
        gateway=GatewayMetrics(uptime_s=12.3, requests=1042, errors=3, backend="builtin",
                               requests_per_s=5.0, latency_ms=Latency(1.0, 2.0, 3.0),
                               by_status={"2xx": 1039, "5xx": 3}, apps_backend="granian"),
        apps={"api": AppMetrics(name="api", state=AppState.HEALTHY, path="/api", pid=4242,
                                port=9001, backend="granian", restarts=1, uptime_s=60.0,
                                cpu_percent=3.5, rss_bytes=41943040, health="ok",
                                health_check="GET /health", last_error="exited with code 1",
                                last_error_at=1767261600.0, pending="configuration changed",
                                requests=1000, errors=2, latency_ms=Latency(1.2, 2.0, 4.8),
                                requests_per_s=2.5),
              "docs": AppMetrics(name="docs", state=MOUNTED, requests=7)},
        extensions={"caching": {"hits": 10, "misses": 4}})
    doc = json.loads(json.dumps(snap.to_json()))
    assert doc == {
        "gateway": {"uptime_s": 12.3, "requests": 1042, "errors": 3, "backend": "builtin",
                    "apps_backend": "granian", "requests_per_s": 5.0,
                    "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0},
                    "by_status": {"2xx": 1039, "5xx": 3}},
        "apps": {
            "api": {"path": "/api", "state": "healthy", "pid": 4242, "port": 9001,
                    "backend": "granian", "restarts": 1, "uptime_s": 60.0,
                    "cpu_percent": 3.5, "rss_bytes": 41943040, "health": "ok",
                    "health_check": "GET /health", "last_error": "exited with code 1",
                    "last_error_at": 1767261600.0, "pending": "configuration changed",
                    "requests": 1000, "errors": 2,
                    "latency_ms": {"p50": 1.2, "p90": 2.0, "p99": 4.8},
                    "requests_per_s": 2.5},
            # An app inside the gateway has no process: no pid, port or restarts at all.
            "docs": {"state": "mounted", "requests": 7, "errors": 0,
                     "latency_ms": {"p50": 0.0, "p90": 0.0, "p99": 0.0},
                     "requests_per_s": 0.0}},
        "extensions": {"caching": {"hits": 10, "misses": 4}}}
    assert list(doc["apps"]["api"])[:3] == ["path", "state", "pid"]


def _raw(i: int) -> tuple[object, ...]:
    return (1000.0 + i, f"rid-{i}", "GET", f"/p/{i}", "", "127.0.0.1", 200, 1.5, None, None,
            None, None, None, None, None, None, ((b"host", b"example"),), (), ())


async def test_export_writes_the_requests_kept_when_it_was_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The copy is taken on the loop, so requests that finish while the file is being
    # written (in a thread) neither break the export nor slip into it.
    project = tmp_path / "workbench.toml"
    project.write_text(f'[server]\nport = {free_port()}\n[logging]\nlevel = "warning"\n')
    engine = Engine(project, watch_config=False, control=False)
    more_added = asyncio.Event()
    real_to_thread = asyncio.to_thread

    async def to_thread_later(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        await more_added.wait()  # the thread's work starts only after more requests came
        return await real_to_thread(func, *args, **kwargs)

    await engine.start()
    try:
        for i in range(3000):
            engine.request_log.add(_raw(i))
        out = tmp_path / "requests.jsonl"
        monkeypatch.setattr(asyncio, "to_thread", to_thread_later)
        export = asyncio.create_task(engine.export_requests(out, "jsonl"))
        await asyncio.sleep(0)
        for i in range(3000, 4000):
            engine.request_log.add(_raw(i))
        more_added.set()
        assert await export == 3000
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["request_id"] for r in rows] == [f"rid-{i}" for i in range(3000)]
    finally:
        monkeypatch.undo()
        await engine.stop()
