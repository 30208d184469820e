"""What the engine tells its listeners (the TUI, headless logging, tests).

Listeners subscribe a plain callable; the engine calls it synchronously on the event loop,
so a listener must be cheap (the TUI only posts a message). High-rate facts (requests) are
delivered in batches by `RequestLog`, not one event per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.orchestrator.states import AppState

log = logging.getLogger("pyserve.events")


@dataclass(frozen=True, slots=True)
class AppStateChanged:
    app: str
    old: AppState
    new: AppState
    pid: int | None = None
    port: int | None = None
    reason: str = ""
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class AppOutput:
    app: str
    stream: str  # "stdout" | "stderr"
    line: str
    request_id: str | None = None
    time: float = 0.0


class RequestsCompleted:
    """A batch of finished requests (`gateway.requestlog.RequestRecord`), oldest first.

    The request log publishes its compact form with the function that decodes it; requests
    are decoded when read, so a listener that ignores them costs nothing.
    """

    __slots__ = ("_items", "_decode")

    def __init__(self, records: Sequence[Any] = (), *, encoded: Sequence[Any] = (),
                 decode: Callable[[Any], Any] | None = None) -> None:
        self._items: Sequence[Any] = encoded if decode is not None else tuple(records)
        self._decode = decode

    @property
    def records(self) -> tuple[Any, ...]:
        if self._decode is not None:
            self._items, self._decode = tuple(map(self._decode, self._items)), None
        return tuple(self._items)

    def latest(self, n: int) -> tuple[Any, ...]:
        """The newest `n` requests, decoding only those (a listener that keeps a bounded
        window need not decode a busy second's worth of requests)."""
        tail = self._items[-n:] if n > 0 else ()
        return tuple(map(self._decode, tail)) if self._decode is not None else tuple(tail)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<RequestsCompleted {len(self)} requests>"


@dataclass(frozen=True, slots=True)
class BackendChanged:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ConfigReloaded:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    #: Changed apps whose new process failed: the old one serves on, the change is pending.
    pending: tuple[str, ...] = ()
    #: Changed apps that get a new process (the others take the change in place).
    restarted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigRejected:
    message: str


@dataclass(frozen=True, slots=True)
class EngineMessage:
    """Anything else worth a line in the log or a notification."""

    level: str
    text: str
    app: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Event = (AppStateChanged | AppOutput | RequestsCompleted | BackendChanged | ConfigReloaded
         | ConfigRejected | EngineMessage)
Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, event: Event) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the engine
                log.exception("event listener %r failed", listener)

    def __repr__(self) -> str:
        return f"<EventBus listeners={len(self._listeners)}>"
