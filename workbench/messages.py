"""Messages of the workbench: engine facts going up to the app, widget choices going up to
their screen.

High-rate facts (request batches, app output, metrics ticks) carry no data: the listener
buffers the data and the message only says "there is more". `can_replace` then collapses a
flood of them into one, so the UI drains each buffer at most once per refresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from gateway.events import AppStateChanged, ConfigReloaded


@dataclass
class EngineStarted(Message):
    """`engine.start()` returned: the gateway serves and the apps are starting."""


@dataclass
class EngineFailed(Message):
    """`engine.start()` or `engine.stop()` raised; the app exits with `code`."""

    text: str
    code: int


@dataclass
class AppStateChange(Message):
    """One app changed state (not collapsed: every change may deserve a notification)."""

    event: AppStateChanged


@dataclass
class RequestsArrived(Message):
    """Finished requests are waiting in the app's request buffer."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RequestsArrived)


@dataclass
class OutputArrived(Message):
    """App output lines are waiting in the app's output buffer."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OutputArrived)


@dataclass
class MetricsUpdated(Message):
    """A fresh `engine.metrics()` snapshot; only the newest one matters."""

    metrics: dict[str, Any] = field(default_factory=dict)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MetricsUpdated)


@dataclass
class BackendSwitched(Message):
    old: str
    new: str


@dataclass
class ConfigApplied(Message):
    change: ConfigReloaded


@dataclass
class ConfigRefused(Message):
    text: str


@dataclass
class EngineNotice(Message):
    level: str
    text: str
    app: str | None = None


@dataclass
class AppHighlighted(Message):
    """The cursor of the apps table moved to `name` (None: the table is empty)."""

    name: str | None


@dataclass
class RequestChosen(Message):
    """The user asked for the trace of a request."""

    request_id: str


@dataclass
class FilterChanged(Message):
    """The request filter bar changed; `app`/`status_class` None mean "all"."""

    app: str | None
    status_class: str | None
    text: str
