"""What the workbench needs from an engine.

`gateway.engine.Engine` satisfies it; so does the deterministic fake the snapshot tests use.
Typing against a protocol keeps the UI honest about which parts of the engine it touches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.config.schema import ProjectConfig
from gateway.events import ConfigReloaded, Event
from gateway.requestlog import RequestRecord


class LogLineLike(Protocol):
    """One captured line of an app's output."""

    time: float
    app: str
    stream: str
    line: str
    request_id: str | None


class EventSource(Protocol):
    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]: ...


class RequestSource(Protocol):
    records: deque[RequestRecord]


class EngineAPI(Protocol):
    """The engine surface the workbench drives."""

    config_path: Path
    events: EventSource
    request_log: RequestSource
    project: ProjectConfig | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    @property
    def backend(self) -> str: ...
    @property
    def address(self) -> tuple[str, int]: ...

    def metrics(self) -> dict[str, Any]: ...
    def installed_backends(self) -> list[str]: ...
    async def restart_app(self, name: str) -> None: ...
    async def stop_app(self, name: str) -> None: ...
    async def start_app(self, name: str) -> None: ...
    async def switch_backend(self, name: str) -> None: ...
    def validate_text(self, text: str) -> ProjectConfig: ...
    def preview_text(self, text: str) -> ConfigReloaded: ...
    async def apply_text(self, text: str) -> ConfigReloaded: ...
    def trace(self, request_id: str) -> dict[str, Any] | None: ...
    def app_logs(self, name: str | None = None) -> list[Any]: ...
    def export_requests(self, path: Path, fmt: str = "jsonl") -> int: ...
