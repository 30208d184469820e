"""The shared services an extension may use, handed to it at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.config.schema import ProjectConfig
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.proxy.headers import Forwarding
from gateway.requestlog import RequestLog

if TYPE_CHECKING:
    from gateway.orchestrator import Orchestrator
    from gateway.proxy.transport import Transport


@dataclass
class Services:
    project: ProjectConfig
    events: EventBus
    metrics: MetricsRegistry
    request_log: RequestLog
    transport: Transport
    orchestrator: Orchestrator | None = None
    #: What serves the gateway, and what an app that inherits `server.backend` runs on.
    backend: Callable[[], str] = lambda: "none"
    app_backend: Callable[[], str] = lambda: "none"
    #: Whose forwarding headers are believed; the engine shares it with the transport.
    forwarding: Forwarding = field(default_factory=Forwarding)
