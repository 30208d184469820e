"""The main screen: header, apps table with sparklines, and the live request log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from gateway.redact import mask_query
from workbench.messages import AppHighlighted, FilterChanged, RequestChosen
from workbench.widgets.apps_table import AppsTable
from workbench.widgets.filter_bar import FilterBar
from workbench.widgets.header_bar import HeaderBar
from workbench.widgets.request_log import RequestFilter, RequestLogView
from workbench.widgets.sparklines import AppSparklines

if TYPE_CHECKING:
    from workbench.app import WorkbenchApp


class DashboardScreen(Screen[None]):
    """Apps on top, requests below. Keys act on the selected app or request."""

    BINDINGS = [
        Binding("r", "restart_app", "Restart"),
        Binding("s", "toggle_app", "Stop/start"),
        Binding("l", "logs", "Logs"),
        Binding("L", "all_logs", "All logs", show=False),
        Binding("b", "backend", "Backend"),
        Binding("e", "edit_config", "Edit config"),
        Binding("slash", "filter", "Filter"),
        Binding("f", "toggle_follow", "Follow/pause"),
        Binding("x", "export", "Export"),
        Binding("c", "copy", "Copy"),
        Binding("enter", "trace", "Trace", show=False),
    ]

    def __init__(self, *, max_rows: int = 1000) -> None:
        super().__init__(id="dashboard")
        self.max_rows = max_rows

    @property
    def workbench(self) -> WorkbenchApp:
        return cast("WorkbenchApp", self.app)

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with Vertical(id="apps-pane"):
            yield AppsTable(id="apps")
            yield AppSparklines()
        with Vertical(id="requests-pane"):
            yield FilterBar()
            yield RequestLogView(max_rows=self.max_rows, id="requests")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#apps-pane").border_title = "Apps"
        self._title_requests()
        self.query_one(AppsTable).focus()

    # --- widgets ------------------------------------------------------------------------

    @property
    def apps_table(self) -> AppsTable:
        return self.query_one(AppsTable)

    @property
    def request_log(self) -> RequestLogView:
        return self.query_one(RequestLogView)

    @property
    def selected_app(self) -> str | None:
        return self.apps_table.selected_app

    # --- data in (called by the app) ----------------------------------------------------

    def show_metrics(self, metrics: dict[str, Any]) -> None:
        apps = self.workbench.engine_app_order(metrics)
        self.apps_table.set_apps(apps)
        self.query_one(FilterBar).apps = tuple(name for name, _ in apps)
        self._show_sparklines(self.selected_app)

    def _show_sparklines(self, name: str | None) -> None:
        latency, rate = self.workbench.history.series(name) if name else ([], [])
        self.query_one(AppSparklines).show(name, latency, rate)

    def _title_requests(self) -> None:
        log = self.request_log
        state = "following" if log.follow else f"paused, {log.held} new"
        filt = log.filter.describe()
        pane = self.query_one("#requests-pane")
        pane.border_title = f"Requests ({state})" + (f" filter: {filt}" if filt else "")
        pane.border_subtitle = f"{log.shown} shown"

    def add_requests(self, records: list[Any]) -> None:
        self.request_log.add_records(records)
        self._title_requests()

    # --- messages up --------------------------------------------------------------------

    @on(AppHighlighted)
    def _app_highlighted(self, message: AppHighlighted) -> None:
        self._show_sparklines(message.name)

    @on(RequestChosen)
    def _request_chosen(self, message: RequestChosen) -> None:
        self.workbench.open_trace(message.request_id)

    @on(FilterChanged)
    def _filter_changed(self, message: FilterChanged) -> None:
        flt = RequestFilter(message.app, message.status_class, message.text)
        self.request_log.rebuild(self.workbench.engine.request_log.snapshot(), flt)
        self._title_requests()

    @on(DataTable.RowSelected, "#apps")
    def _app_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.workbench.open_logs(event.row_key.value)

    # --- actions ------------------------------------------------------------------------

    def _require_app(self) -> str | None:
        name = self.selected_app
        if name is None:
            self.notify("No app selected", severity="warning")
        return name

    def action_restart_app(self) -> None:
        if (name := self._require_app()) is not None:
            self.workbench.restart_app(name)

    def action_toggle_app(self) -> None:
        if (name := self._require_app()) is not None:
            self.workbench.toggle_app(name)

    def action_logs(self) -> None:
        self.workbench.open_logs(self.selected_app)

    def action_all_logs(self) -> None:
        self.workbench.open_logs(None)

    def action_backend(self) -> None:
        self.workbench.pick_backend()

    def action_edit_config(self) -> None:
        self.workbench.edit_config()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def set_filter(self, app: str | None = None, status_class: str | None = None,
                   text: str = "") -> None:
        bar = self.query_one(FilterBar)
        bar.add_class("-visible")
        bar.set_filter(app, status_class, text)

    def action_toggle_follow(self) -> None:
        log = self.request_log
        log.follow = not log.follow
        self._title_requests()

    def action_export(self) -> None:
        self.workbench.export_dialog()

    def action_trace(self) -> None:
        rec = self.request_log.selected_record
        if rec is not None:
            self.workbench.open_trace(rec.request_id)

    def action_copy(self) -> None:
        if self.focused is self.request_log or self.focused is None:
            rec = self.request_log.selected_record
            if rec is not None:
                self.workbench.copy(
                    f"{rec.request_id} {rec.method} {rec.path}"
                    + (f"?{mask_query(rec.query)}" if rec.query else "")
                    + f" {rec.status} {rec.latency_ms:.1f}ms app={rec.app or '-'}",
                    what=f"request {rec.request_id}")
                return
        name = self.selected_app
        if name is not None:
            self.workbench.copy(self.workbench.app_summary(name), what=f"app {name}")
