"""A deterministic, in-memory engine for snapshot tests and screenshots.

It implements the surface of `gateway.engine.Engine` that the workbench uses, with fixed
times, pids, ports and latencies, so SVG snapshots are identical run after run. Behaviour
(restarts, backend switches, config edits on real processes) is tested against the real
engine in the Pilot tests; this fake only has to look right.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.loader import validate_text
from gateway.config.schema import ProjectConfig
from gateway.config.writer import write_atomic
from gateway.events import (
    AppStateChanged,
    BackendChanged,
    ConfigReloaded,
    EventBus,
    RequestsCompleted,
)
from gateway.orchestrator.states import AppState
from gateway.redact import redact_request
from gateway.requestlog import RequestRecord
from gateway.snapshots import AppMetrics, GatewayMetrics, Latency, MetricsSnapshot, Trace

T0 = 1767261600.0  # 2026-01-01 10:00:00 UTC

PROJECT_TEXT = """\
# Shop: an API, a web front end and a job runner behind one gateway.
[server]
host = "127.0.0.1"
port = 8000
backend = "granian"        # auto | granian | uvicorn | hypercorn

[logging]
level = "info"
request_log_size = 10000

[[extensions]]
type = "security"
[extensions.config]
blocked_ips = ["10.0.0.50"]

[[extensions]]
type = "process_orchestration"
[extensions.config]
port_range = [9000, 9999]

[[extensions.config.apps]]
name = "api"
path = "/api"
app_path = "shop.api:app"

[[extensions.config.apps]]
name = "web"
path = "/web"
app_path = "shop.web:app"
workers = 2

[[extensions.config.apps]]
name = "jobs"
path = "/jobs"
app_path = "shop.jobs:app"

[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/ping" = { return = "200 pong", content_type = "text/plain" }
"""

APPS: dict[str, dict[str, Any]] = {
    "api": {"pid": 41021, "port": 9001, "restarts": 1, "requests": 1842, "errors": 12,
            "latency_ms": {"p50": 3.41, "p90": 9.8, "p99": 27.6}, "requests_per_s": 38.5,
            "cpu_percent": 12.4, "rss_bytes": 61_341_696, "uptime_s": 754.0, "health": "ok"},
    "web": {"pid": 41022, "port": 9002, "restarts": 0, "requests": 655, "errors": 0,
            "latency_ms": {"p50": 8.2, "p90": 15.1, "p99": 44.0}, "requests_per_s": 11.2,
            "cpu_percent": 4.1, "rss_bytes": 88_604_672, "uptime_s": 1203.0, "health": "ok",
            "health_check": "any answer < 500 (no /health route)"},
    "jobs": {"pid": 41023, "port": 9003, "restarts": 3, "requests": 97, "errors": 9,
             "latency_ms": {"p50": 120.0, "p90": 310.0, "p99": 802.0},
             "requests_per_s": 0.8, "cpu_percent": 61.0, "rss_bytes": 204_472_320,
             "uptime_s": 41.0, "health": "failing", "health_check": "GET /health",
             "last_error": "GET /health timed out after 5s"},
}

# A minute of sparkline history for the screenshots (seeded, not measured).
LATENCY = [3.1, 3.4, 3.2, 4.0, 5.5, 3.3, 3.0, 2.9, 8.4, 12.0, 6.1, 3.6, 3.4, 3.2, 3.3, 3.5,
           3.1, 4.2, 3.8, 3.3, 3.4, 3.0, 2.8, 3.1, 3.6, 4.4, 9.9, 4.1, 3.3, 3.2]
RATE = [20, 22, 25, 31, 38, 41, 40, 36, 30, 28, 33, 39, 44, 47, 45, 40, 38, 37, 35, 36, 38,
        41, 43, 40, 39, 38, 37, 39, 40, 38.5]

PATHS = ["/api/orders", "/api/orders/1042", "/web/", "/web/static/app.js", "/api/cart",
         "/jobs/run", "/api/users/me", "/ping", "/web/checkout", "/api/orders?page=2"]
STATUSES = [200, 200, 201, 304, 200, 500, 200, 200, 404, 200, 502, 200]
METHODS = ["GET", "GET", "POST", "GET", "PUT", "POST", "GET", "GET", "DELETE", "GET"]


@dataclass(frozen=True)
class FakeLogLine:
    time: float
    app: str
    stream: str
    line: str
    request_id: str | None = None


def request_id(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"request-{i}"))


def make_record(i: int) -> RequestRecord:
    raw = PATHS[i % len(PATHS)]
    path, _, query = raw.partition("?")
    app = None if path == "/ping" else path.split("/")[1]
    status = 200 if app is None else STATUSES[i % len(STATUSES)]
    latency = 0.3 if app is None else round(1.5 + (i * 7919 % 997) / 23.0, 3)
    rid = request_id(i)
    upstream = None if app is None else f"http://127.0.0.1:{APPS[app]['port']}{path}"
    return RequestRecord(
        time=T0 + i * 0.25, request_id=rid, method="GET" if app is None else METHODS[i % 10],
        path=path, query=query, client="127.0.0.1", status=status, latency_ms=latency, app=app,
        route="=/ping" if app is None else f"app:{app}", upstream=upstream,
        upstream_connect_ms=None if app is None else 0.4,
        upstream_ttfb_ms=None if app is None else round(latency * 0.7, 3),
        upstream_total_ms=None if app is None else round(latency * 0.85, 3),
        cache=None if app is None else ("MISS" if i % 3 else "HIT"),
        request_headers=[(b"host", b"127.0.0.1:8000"), (b"user-agent", b"curl/8.5.0"),
                         (b"accept", b"*/*"), (b"x-request-id", rid.encode())],
        response_headers=[(b"content-type", b"application/json"),
                          (b"x-request-id", rid.encode()), (b"x-frame-options", b"DENY"),
                          (b"x-cache", b"MISS" if i % 3 else b"HIT")],
        notes={} if app is None else {"strip_path": True},
    )


class FakeRequestLog:
    def __init__(self) -> None:
        self.records: deque[RequestRecord] = deque(maxlen=10000)

    def __len__(self) -> int:
        return len(self.records)

    def snapshot(self) -> list[RequestRecord]:
        return list(self.records)


class FakeEngine:
    """Engine look-alike over fixed data. `config_path` must be a writable project file."""

    def __init__(self, config_path: Path, *, requests: int = 60) -> None:
        self.config_path = config_path
        if not config_path.exists():
            config_path.write_text(PROJECT_TEXT, encoding="utf-8")
        self.events = EventBus()
        self.request_log = FakeRequestLog()
        self.project: ProjectConfig | None = None
        self._backend = "granian"
        self._apps = {name: {"state": AppState.STARTING, "backend": "granian", **values}
                      for name, values in APPS.items()}
        self._requests = requests
        self.started = False
        self.stopped = False
        self.calls: list[tuple[str, str]] = []

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.project = self.validate_text(self.config_path.read_text())
        self.started = True
        for name, app in self._apps.items():
            app["state"] = AppState.UNHEALTHY if name == "jobs" else AppState.HEALTHY
            self.events.emit(AppStateChanged(name, AppState.STARTING, app["state"], app["pid"],
                                             app["port"], "", app["restarts"]))
        records = [make_record(i) for i in range(self._requests)]
        self.request_log.records.extend(records)
        self.events.emit(RequestsCompleted(tuple(records)))

    async def stop(self) -> None:
        for app in self._apps.values():
            app["state"] = AppState.STOPPED
        self.stopped = True

    # --- state ------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def app_backend(self) -> str:
        return "granian" if self._backend == "builtin" else self._backend

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", 8000)

    def installed_backends(self) -> list[str]:
        return ["granian", "uvicorn", "hypercorn"]

    def metrics(self) -> MetricsSnapshot:
        apps = {}
        for name, app in self._apps.items():
            entry = dict(app, latency_ms=Latency(**app["latency_ms"]))
            if entry["state"] is AppState.STOPPED:
                entry.update(pid=None, cpu_percent=None, rss_bytes=None, uptime_s=None,
                             requests_per_s=0.0, health=None)
            apps[name] = AppMetrics(name=name, **entry)
        return MetricsSnapshot(
            gateway=GatewayMetrics(uptime_s=1325.0, requests=2651, errors=21,
                                   backend=self._backend, requests_per_s=50.5,
                                   apps_backend=self.app_backend),
            apps=apps, extensions={"caching": {"hits": 10, "misses": 4}})

    def app_logs(self, name: str | None = None) -> list[FakeLogLine]:
        """Two lines per recent request of an app: what it did, and a warning now and then."""
        lines = []
        for i in range(max(0, self._requests - 30), self._requests):
            rec = make_record(i)
            if rec.app is None or (name is not None and rec.app != name):
                continue
            lines.append(FakeLogLine(rec.time - 0.002, rec.app, "stdout",
                                     f"INFO {rec.method} {rec.path} -> {rec.status} "
                                     f"rid={rec.request_id[:8]}", rec.request_id))
            if rec.status >= 500 or i % 7 == 0:
                lines.append(FakeLogLine(rec.time - 0.001, rec.app, "stderr",
                                         f"WARNING slow query on orders ({90 + i} ms)",
                                         rec.request_id))
        return lines

    def trace(self, rid: str) -> Trace | None:
        record = next((r for r in self.request_log.records if r.request_id == rid), None)
        if record is None:
            return None
        lines = [ln for ln in self.app_logs(record.app) if ln.request_id == rid] \
            if record.app else []
        return Trace(record, tuple(lines))  # FakeLogLine has LogLine's fields

    # --- commands ---------------------------------------------------------------------------

    def _set_state(self, name: str, new: AppState, reason: str = "") -> None:
        app = self._apps[name]
        old, app["state"] = app["state"], new
        self.events.emit(AppStateChanged(name, old, new, app["pid"], app["port"], reason,
                                         app["restarts"]))

    async def restart_app(self, name: str) -> bool:
        self.calls.append(("restart", name))
        self._apps[name]["restarts"] += 1
        self._set_state(name, AppState.RESTARTING, "restart requested")
        self._set_state(name, AppState.HEALTHY)
        return True

    async def stop_app(self, name: str) -> None:
        self.calls.append(("stop", name))
        self._set_state(name, AppState.STOPPED, "stop requested")

    async def start_app(self, name: str) -> None:
        self.calls.append(("start", name))
        self._set_state(name, AppState.HEALTHY)

    async def switch_backend(self, name: str) -> None:
        self.calls.append(("backend", name))
        old, self._backend = self._backend, name
        for app in self._apps.values():
            app["backend"] = self.app_backend
        self.events.emit(BackendChanged(old, name))

    def validate_text(self, text: str) -> ProjectConfig:
        # Errors name the file as given; relative to the cwd keeps snapshots path-free.
        return validate_text(Path(os.path.relpath(self.config_path)), text, environ={})

    def preview_text(self, text: str) -> ConfigReloaded:
        new = self.validate_text(text)
        before = {a.name: a for a in (self.project.apps if self.project else [])}
        after = {a.name: a for a in new.apps}
        changed = tuple(n for n in after if n in before and after[n] != before[n])
        return ConfigReloaded(tuple(n for n in after if n not in before),
                              tuple(n for n in before if n not in after), changed,
                              restarted=changed)

    async def apply_text(self, text: str) -> ConfigReloaded:
        change = self.preview_text(text)
        write_atomic(self.config_path, text)
        self.project = self.validate_text(text)
        self.events.emit(change)
        return change

    async def export_requests(self, path: Path, fmt: str = "jsonl", *,
                              include_credentials: bool = False) -> int:
        records = self.request_log.snapshot()
        shown = (lambda d: d) if include_credentials else redact_request
        text = "".join(json.dumps(shown(r.to_dict())) + "\n" for r in records)
        await asyncio.to_thread(write_atomic, path, text)  # a reader sees all or nothing
        return len(records)

    def __repr__(self) -> str:
        return f"<FakeEngine {self.config_path.name} backend={self._backend}>"
