"""One line at the top: project, gateway address, backend, uptime, total requests/s."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from gateway.snapshots import MetricsSnapshot
from workbench import formatting as fmt


class HeaderBar(Widget):
    """The workbench's status line."""

    DEFAULT_CSS = """
    HeaderBar {
        dock: top;
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
    }
    """

    project: reactive[str] = reactive("")
    """Name of the project file's folder (what the user calls the project)."""
    address: reactive[str] = reactive("")
    """The gateway's URL, e.g. ``http://127.0.0.1:8000``."""
    backend: reactive[str] = reactive("")
    """What serves the gateway now (`builtin`, `granian`...)."""
    apps_backend: reactive[str] = reactive("")
    """What apps that inherit `server.backend` run on; shown when it differs."""
    uptime_s: reactive[float | None] = reactive(None)
    """Seconds since the gateway started; None before the first metrics poll."""
    requests_per_s: reactive[float] = reactive(0.0)
    """Total requests per second through the gateway."""
    status: reactive[str] = reactive("starting")
    """Engine phase: ``starting``, ``running``, ``stopping`` or ``failed``."""

    def update_from_metrics(self, metrics: MetricsSnapshot) -> None:
        gw = metrics.gateway
        self.uptime_s = gw.uptime_s
        self.requests_per_s = float(gw.requests_per_s or 0.0)
        if gw.backend:
            self.backend = str(gw.backend)
        if gw.apps_backend:
            self.apps_backend = str(gw.apps_backend)

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {self.project} ", style="bold reverse")
        if self.address:
            text.append(f" {self.address}", style="underline")
        if self.apps_backend and self.apps_backend != self.backend:
            text.append("   gateway ", style="dim")
            text.append(self.backend or "-", style="bold")
            text.append(" apps ", style="dim")
            text.append(self.apps_backend, style="bold")
        else:
            text.append("   backend ", style="dim")
            text.append(self.backend or "-", style="bold")
        text.append("   up ", style="dim")
        text.append(fmt.duration(self.uptime_s))
        text.append("   ")
        text.append(fmt.rate(self.requests_per_s), style="bold")
        text.append(" req/s", style="dim")
        if self.status != "running":
            text.append(f"  [{self.status}]", style="bold #d9822b")
        return text
