"""The table of apps: one row per app, cells updated in place from each metrics snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from gateway.orchestrator.states import AppState
from gateway.snapshots import AppMetrics
from workbench import formatting as fmt
from workbench.messages import AppHighlighted

# (column key, label, how to render it from one app's metrics)
COLUMNS: tuple[tuple[str, str, Callable[[AppMetrics], str | Text]], ...] = (
    # The most telling columns first: at 80 columns the rest scrolls into view.
    ("name", "app", lambda a: Text(a.name, style="bold")),
    ("state", "state", lambda a: fmt.state_badge(a.state)),
    ("health", "health", lambda a: fmt.health_cell(a.health, a.health_check)),
    ("rps", "req/s", lambda a: fmt.rate(a.requests_per_s)),
    ("p50", "p50 ms", lambda a: fmt.millis(a.latency_ms.p50 if a.latency_ms else None)),
    ("p99", "p99 ms", lambda a: fmt.millis(a.latency_ms.p99 if a.latency_ms else None)),
    ("cause", "cause", fmt.cause_text),
    ("restarts", "restarts", lambda a: str(a.restarts)),
    ("pid", "pid", lambda a: fmt.number(a.pid)),
    ("port", "port", lambda a: fmt.number(a.port)),
    ("backend", "backend", lambda a: fmt.number(a.backend)),
    ("uptime", "uptime", lambda a: fmt.duration(a.uptime_s)),
    ("cpu", "cpu", lambda a: fmt.percent(a.cpu_percent)),
    ("mem", "mem", lambda a: fmt.size(a.rss_bytes)),
    ("path", "path", lambda a: fmt.number(a.path)),
)


class AppsTable(DataTable[str | Text]):
    """Apps and their live numbers. Posts `AppHighlighted` when the cursor moves."""

    DEFAULT_CSS = """
    AppsTable {
        height: auto;
        max-height: 100%;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._apps: dict[str, AppMetrics] = {}

    def on_mount(self) -> None:
        for key, label, _ in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_app(self) -> str | None:
        """Name of the app under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def app_state(self, name: str) -> AppState | str | None:
        app = self._apps.get(name)
        return app.state if app is not None else None

    def row(self, name: str) -> AppMetrics | None:
        """What the row of `name` shows."""
        return self._apps.get(name)

    @property
    def app_names(self) -> list[str]:
        return list(self._apps)

    def set_apps(self, apps: Iterable[AppMetrics]) -> None:
        """Show exactly these apps, updating changed cells only."""
        seen: list[str] = []
        for app in apps:
            seen.append(app.name)
            self._show(app)
        for gone in [n for n in self._apps if n not in seen]:
            del self._apps[gone]
            try:
                self.remove_row(gone)
            except RowDoesNotExist:
                pass

    def update_app(self, name: str, **changes: Any) -> None:
        """Change some of what the row of `name` shows (adding the row if it is new)."""
        self._show(replace(self._apps.get(name) or AppMetrics(name=name), **changes))

    def _show(self, app: AppMetrics) -> None:
        name = app.name
        previous = self._apps.get(name)
        self._apps[name] = app
        cells = [render(app) for _, _, render in COLUMNS]
        if previous is None:
            self.add_row(*cells, key=name)
            if self.row_count == 1:
                self.post_message(AppHighlighted(name))
            return
        old_cells = [render(previous) for _, _, render in COLUMNS]
        for (key, _, _), new, old in zip(COLUMNS, cells, old_cells, strict=True):
            if str(new) != str(old):
                self.update_cell(name, key, new, update_width=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(AppHighlighted(event.row_key.value))
