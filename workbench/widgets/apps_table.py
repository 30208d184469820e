"""The table of apps: one row per app, cells updated in place from each metrics snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from workbench import formatting as fmt
from workbench.messages import AppHighlighted


def _lat(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda a: fmt.millis((a.get("latency_ms") or {}).get(key))


# (column key, label, how to render it from one app's metrics entry)
COLUMNS: tuple[tuple[str, str, Callable[[dict[str, Any]], str | Text]], ...] = (
    # The most telling columns first: at 80 columns the rest scrolls into view.
    ("name", "app", lambda a: Text(a.get("name", ""), style="bold")),
    ("state", "state", lambda a: fmt.state_badge(a.get("state"))),
    ("health", "health", lambda a: fmt.health_cell(a.get("health"), a.get("health_check"))),
    ("rps", "req/s", lambda a: fmt.rate(a.get("requests_per_s"))),
    ("p50", "p50 ms", _lat("p50")),
    ("p99", "p99 ms", _lat("p99")),
    ("cause", "cause", fmt.cause_text),
    ("restarts", "restarts", lambda a: str(a.get("restarts", 0))),
    ("pid", "pid", lambda a: fmt.number(a.get("pid"))),
    ("port", "port", lambda a: fmt.number(a.get("port"))),
    ("backend", "backend", lambda a: fmt.number(a.get("backend"))),
    ("uptime", "uptime", lambda a: fmt.duration(a.get("uptime_s"))),
    ("cpu", "cpu", lambda a: fmt.percent(a.get("cpu_percent"))),
    ("mem", "mem", lambda a: fmt.size(a.get("rss_bytes"))),
    ("path", "path", lambda a: fmt.number(a.get("path"))),
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
        self._apps: dict[str, dict[str, Any]] = {}

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

    def app_state(self, name: str) -> str | None:
        return self._apps.get(name, {}).get("state")

    @property
    def app_names(self) -> list[str]:
        return list(self._apps)

    def set_apps(self, apps: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Show exactly these apps (name, metrics entry), updating changed cells only."""
        seen: list[str] = []
        for name, entry in apps:
            seen.append(name)
            self.update_app(name, entry)
        for gone in [n for n in self._apps if n not in seen]:
            del self._apps[gone]
            try:
                self.remove_row(gone)
            except RowDoesNotExist:
                pass

    def update_app(self, name: str, entry: dict[str, Any]) -> None:
        """Merge `entry` into the row of `name` (adding the row if it is new)."""
        merged = {**self._apps.get(name, {}), **entry, "name": name}
        previous = self._apps.get(name)
        self._apps[name] = merged
        cells = [render(merged) for _, _, render in COLUMNS]
        if previous is None:
            self.add_row(*cells, key=name)
            if self.row_count == 1:
                self.post_message(AppHighlighted(name))
            return
        old_cells = [render({**previous, "name": name}) for _, _, render in COLUMNS]
        for (key, _, _), new, old in zip(COLUMNS, cells, old_cells, strict=True):
            if str(new) != str(old):
                self.update_cell(name, key, new, update_width=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(AppHighlighted(event.row_key.value))
