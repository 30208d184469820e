"""The main screen: header, apps table with sparklines, and the live request log.

It shows what the app hands down (`show_metrics`, `add_requests`, `show_filtered`) and says
what the user wants by posting intents (`workbench.messages`); it never calls the engine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from gateway.config.schema import ProjectConfig
from gateway.orchestrator.states import IDLE
from gateway.redact import mask_query
from gateway.requestlog import RequestRecord
from gateway.snapshots import AppMetrics, MetricsSnapshot
from workbench import formatting as fmt
from workbench.history import MetricsHistory
from workbench.messages import (
    AppHighlighted,
    ChooseExport,
    CopyText,
    EditProject,
    PickBackend,
    RequestChosen,
    RestartApp,
    ShowLogs,
    StartApp,
    StopApp,
)
from workbench.widgets.apps_table import AppsTable
from workbench.widgets.filter_bar import FilterBar
from workbench.widgets.header_bar import HeaderBar
from workbench.widgets.request_log import RequestFilter, RequestLogView
from workbench.widgets.sparklines import AppSparklines


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

    def __init__(self, *, max_rows: int = 1000, history: MetricsHistory | None = None) -> None:
        super().__init__(id="dashboard")
        self.max_rows = max_rows
        self.history = history or MetricsHistory()

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

    def show_metrics(self, metrics: MetricsSnapshot, project: ProjectConfig | None = None) -> None:
        """Apps in project-file order, then any others the metrics know of (mounts)."""
        known: dict[str, AppMetrics | None] = dict(metrics.apps)
        table = self.apps_table
        apps = [replace(known.pop(app.name, None) or table.row(app.name)
                        or AppMetrics(name=app.name), path=app.path)
                for app in (project.apps if project is not None else [])]
        apps.extend(app for app in known.values() if app is not None)
        table.set_apps(apps)
        self.query_one(FilterBar).apps = tuple(app.name for app in apps)
        self._show_sparklines(self.selected_app)

    def _show_sparklines(self, name: str | None) -> None:
        latency, rate = self.history.series(name) if name else ([], [])
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

    def show_filtered(self, flt: RequestFilter, records: list[RequestRecord]) -> None:
        """Rebuild the request log from `records` (every kept request) under `flt`."""
        self.request_log.rebuild(records, flt)
        self._title_requests()

    # --- messages up --------------------------------------------------------------------

    @on(AppHighlighted)
    def _app_highlighted(self, message: AppHighlighted) -> None:
        self._show_sparklines(message.name)

    # RequestChosen and FilterChanged go on to the app, which has the data they need.

    @on(DataTable.RowSelected, "#apps")
    def _app_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(ShowLogs(event.row_key.value))

    # --- actions ------------------------------------------------------------------------

    def _require_app(self) -> str | None:
        name = self.selected_app
        if name is None:
            self.notify("No app selected", severity="warning")
        return name

    def action_restart_app(self) -> None:
        if (name := self._require_app()) is not None:
            self.post_message(RestartApp(name))

    def action_toggle_app(self) -> None:
        if (name := self._require_app()) is not None:
            idle = self.apps_table.app_state(name) in IDLE
            self.post_message(StartApp(name) if idle else StopApp(name))

    def action_logs(self) -> None:
        self.post_message(ShowLogs(self.selected_app))

    def action_all_logs(self) -> None:
        self.post_message(ShowLogs(None))

    def action_backend(self) -> None:
        self.post_message(PickBackend())

    def action_edit_config(self) -> None:
        self.post_message(EditProject())

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
        self.post_message(ChooseExport())

    def action_trace(self) -> None:
        rec = self.request_log.selected_record
        if rec is not None:
            self.post_message(RequestChosen(rec.request_id))

    def action_copy(self) -> None:
        if self.focused is self.request_log or self.focused is None:
            rec = self.request_log.selected_record
            if rec is not None:
                self.post_message(CopyText(
                    f"{rec.request_id} {rec.method} {rec.path}"
                    + (f"?{mask_query(rec.query)}" if rec.query else "")
                    + f" {rec.status} {rec.latency_ms:.1f}ms app={rec.app or '-'}",
                    what=f"request {rec.request_id}"))
                return
        name = self.selected_app
        if name is not None:
            self.post_message(CopyText(self.app_summary(name), what=f"app {name}"))

    def app_summary(self, name: str) -> str:
        """One line about app `name`, as its row shows it."""
        a = self.apps_table.row(name) or AppMetrics(name=name)
        lat = a.latency_ms
        return (f"{name} {a.path or ''} state={a.state} pid={a.pid} port={a.port} "
                f"backend={a.backend} restarts={a.restarts} req/s={fmt.rate(a.requests_per_s)} "
                f"p50={fmt.millis(lat.p50 if lat else None)}ms "
                f"p99={fmt.millis(lat.p99 if lat else None)}ms "
                f"health: {a.health_check or '-'}"
                + (f" pending: {a.pending}" if a.pending else "")
                + (f" last error: {a.last_error}" if a.last_error else ""))
