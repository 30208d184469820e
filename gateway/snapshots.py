"""What the engine reports, as frozen dataclasses its listeners read by attribute.

`Engine.metrics()` returns a `MetricsSnapshot` and `Engine.trace()` a `Trace`; the TUI, the
control channel and `/metrics` all start from these. `MetricsSnapshot.to_json` is the one
place that writes the `/metrics` JSON (SPEC §3), for the HTTP endpoint and `status` alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from gateway.orchestrator.states import AppState

if TYPE_CHECKING:
    from gateway.orchestrator.logs import LogLine
    from gateway.requestlog import RequestRecord

#: The state of an app served inside the gateway process (an `asgi` mount): no process.
MOUNTED: Final = "mounted"

#: Keys of an orchestrated app's entry in `/metrics`, in the order they are written.
_PROCESS_KEYS = ("path", "state", "pid", "port", "backend", "restarts", "uptime_s",
                 "cpu_percent", "rss_bytes", "health", "health_check", "last_error",
                 "last_error_at", "pending")


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in milliseconds."""

    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0

    @classmethod
    def of(cls, summary: Mapping[str, float]) -> Latency:
        return cls(summary["p50"], summary["p90"], summary["p99"])

    def to_json(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True, slots=True)
class AppMetrics:
    """One app: its process (for an orchestrated app) and the requests it answered.

    `state` is an `AppState`, or `MOUNTED` for an app that runs inside the gateway; None
    only while nothing is known yet (the UI's rows before the first report).
    """

    name: str
    state: AppState | str | None = None
    path: str | None = None
    pid: int | None = None
    port: int | None = None
    backend: str | None = None
    restarts: int = 0
    uptime_s: float | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    health: Any = None
    #: How health is judged ("GET /health", "any answer < 500 ..."), as the user reads it.
    health_check: str | None = None
    #: The last failure's cause (sanitized) and when it happened (epoch seconds).
    last_error: str | None = None
    last_error_at: float | None = None
    #: A configuration change not taken yet (its new process failed), as a reason.
    pending: str | None = None
    requests: int = 0
    errors: int = 0
    latency_ms: Latency | None = None
    requests_per_s: float | None = None

    @property
    def mounted(self) -> bool:
        return self.state == MOUNTED

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": MOUNTED} if self.mounted else {
            key: getattr(self, key) for key in _PROCESS_KEYS}
        out.update(requests=self.requests, errors=self.errors,
                   latency_ms=(self.latency_ms or Latency()).to_json(),
                   requests_per_s=self.requests_per_s or 0.0)
        return out


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    uptime_s: float
    requests: int
    errors: int
    backend: str  # what serves the gateway (`builtin`, `granian`...)
    requests_per_s: float
    latency_ms: Latency = field(default_factory=Latency)
    by_status: Mapping[str, int] = field(default_factory=dict)
    apps_backend: str = ""  # what apps that inherit `server.backend` run on

    def to_json(self) -> dict[str, Any]:
        return {"uptime_s": self.uptime_s, "requests": self.requests, "errors": self.errors,
                "backend": self.backend, "apps_backend": self.apps_backend,
                "requests_per_s": self.requests_per_s,
                "latency_ms": self.latency_ms.to_json(), "by_status": dict(self.by_status)}


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The gateway, every app (orchestrated apps in project order, then mounted ones) and
    each extension's own figures (free-form: an extension reports what it counts)."""

    gateway: GatewayMetrics
    apps: Mapping[str, AppMetrics] = field(default_factory=dict)
    extensions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `/metrics` JSON document."""
        return {"gateway": self.gateway.to_json(),
                "apps": {name: app.to_json() for name, app in self.apps.items()},
                "extensions": dict(self.extensions)}


@dataclass(frozen=True, slots=True)
class Trace:
    """One request and the lines its app logged with the same request id."""

    request: RequestRecord
    app_lines: Sequence[LogLine] = ()
