"""Messages of the workbench: engine facts going up to the app, widget choices going up to
their screen, and intents: what the user wants, posted by screens, widgets and the command
palette and handled in one place, the `WorkbenchApp` (only it talks to the engine).

High-rate facts (request batches, app output, metrics ticks) carry no data: the listener
buffers the data and the message only says "there is more". `can_replace` then collapses a
flood of them into one, so the UI drains each buffer at most once per refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from gateway.events import AppStateChanged, ConfigReloaded
from gateway.snapshots import MetricsSnapshot


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

    metrics: MetricsSnapshot

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


# --- intents (handled by WorkbenchApp) ---------------------------------------------------


@dataclass
class RestartApp(Message):
    """Restart app `name` (a new process, blue/green where possible)."""

    name: str


@dataclass
class StopApp(Message):
    name: str


@dataclass
class StartApp(Message):
    name: str


@dataclass
class PickBackend(Message):
    """Offer the installed backends to switch to."""


@dataclass
class SwitchBackend(Message):
    """Serve the gateway (and the apps that inherit it) on backend `name`."""

    name: str


@dataclass
class EditProject(Message):
    """Open the project file in the editor."""


@dataclass
class SaveProject(Message):
    """Validate `text`, show what applying it changes, then write and apply it; `diff` is
    the edit against the running file (empty: nothing to apply)."""

    text: str
    diff: str


@dataclass
class ChooseExport(Message):
    """Ask where to export the request log."""


@dataclass
class ExportRequests(Message):
    """Write the request log with its traces to `path` as `fmt` (jsonl or har), credentials
    masked unless `include_credentials`."""

    path: Path
    fmt: str
    include_credentials: bool = False


@dataclass
class ShowLogs(Message):
    """The logs of app `name` (None: every app merged)."""

    name: str | None


@dataclass
class ShowRequests(Message):
    """Filter the request log (None: any app / status class)."""

    app: str | None = None
    status_class: str | None = None
    text: str = ""


@dataclass
class OpenFilter(Message):
    """Open the request filter bar."""


@dataclass
class ToggleFollow(Message):
    """Follow or pause the request log."""


@dataclass
class CopyText(Message):
    """Put `text` on the clipboard; `what` names it in the confirmation."""

    text: str
    what: str
