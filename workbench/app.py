"""The workbench app: starts the engine, turns its events into messages, and hosts the screens.

The engine runs in the same event loop as Textual. Its listener only buffers data and posts
messages; screens get their data handed down by this app ("attributes down, messages up").
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.timer import Timer

from gateway.errors import ConfigError, GatewayError
from gateway.events import (
    AppOutput,
    AppStateChanged,
    BackendChanged,
    ConfigRejected,
    ConfigReloaded,
    EngineMessage,
    Event,
    RequestsCompleted,
)
from gateway.orchestrator.states import AppState
from gateway.requestlog import RequestRecord
from gateway.snapshots import AppMetrics, MetricsSnapshot
from workbench import formatting as fmt
from workbench.commands import PaletteCommand, WorkbenchCommands, palette_commands
from workbench.history import MetricsHistory
from workbench.messages import (
    AppStateChange,
    BackendSwitched,
    ConfigApplied,
    ConfigRefused,
    CopyText,
    EngineFailed,
    EngineNotice,
    EngineStarted,
    ExportRequests,
    FilterChanged,
    MetricsUpdated,
    OutputArrived,
    RequestChosen,
    RequestsArrived,
    RestartApp,
    SaveProject,
    ShowLogs,
    ShowRequests,
    StartApp,
    StopApp,
    SwitchBackend,
)
from workbench.protocol import EngineAPI
from workbench.screens.apply_preview import ApplyPreview
from workbench.screens.backend_picker import BackendPicker
from workbench.screens.config_editor import ConfigEditorScreen
from workbench.screens.dashboard import DashboardScreen
from workbench.screens.export_dialog import ExportDialog, ExportRequest, default_export_path
from workbench.screens.help import HelpScreen, HelpSection
from workbench.screens.logs import LogsScreen
from workbench.screens.trace import TraceScreen
from workbench.widgets.filter_bar import FilterBar
from workbench.widgets.header_bar import HeaderBar
from workbench.widgets.request_log import RequestFilter

log = logging.getLogger("pyserve.workbench")

#: How often the request table and the sparklines take in new requests, at most: faster than
#: a person reads, and under load the TUI then decodes the newest `max_rows` per refresh
#: instead of every request (bench/README.md, "The TUI under load").
REQUESTS_EVERY = 0.1


class WorkbenchApp(App[None]):
    """The interactive workbench around one engine."""

    CSS_PATH = ["app.tcss", "dialogs.tcss"]
    TITLE = "pyserve-tui"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, engine: EngineAPI, *, poll_interval: float = 1.0, max_rows: int = 1000,
                 history_size: int = 60) -> None:
        super().__init__()
        self.engine = engine
        self.poll_interval = poll_interval
        self.max_rows = max_rows
        self.history = MetricsHistory(history_size)
        self.metrics: MetricsSnapshot | None = None
        self.phase = "starting"
        self.startup_error: str | None = None
        #: Finished requests not shown yet, as the engine published them (not decoded):
        #: at most the batches that hold the newest `max_rows` (`_take_requests`).
        self._pending_requests: deque[RequestsCompleted] = deque()
        self._pending_count = 0
        self._requests_timer: Timer | None = None
        self._requests_shown_at = 0.0
        self._pending_output: deque[Any] = deque(maxlen=5000)
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen(max_rows=self.max_rows, history=self.history))
        self._unsubscribe = self.engine.events.subscribe(self._on_engine_event)
        self._start_engine()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def _start_engine(self) -> None:
        try:
            await self.engine.start()
        except ConfigError as exc:
            self.post_message(EngineFailed(str(exc), 2))
        except GatewayError as exc:
            self.post_message(EngineFailed(str(exc), exc.exit_code))
        except Exception as exc:  # an unexpected failure still exits cleanly with code 1
            log.exception("engine start failed")
            self.post_message(EngineFailed(f"cannot start: {exc}", 1))
        else:
            self.post_message(EngineStarted())

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.phase = "failed"
        self.startup_error = message.text
        self.exit(return_code=message.code)

    def on_engine_started(self) -> None:
        if self.phase != "starting":
            return
        self.phase = "running"
        project = self.engine.project
        host, port = self.engine.address
        for header in self._headers():
            header.project = self.engine.config_path.parent.name or str(self.engine.config_path)
            header.address = f"http://{host}:{port}"
            header.backend = self.engine.backend
            header.apps_backend = self.engine.app_backend
            header.status = "running"
        if project is not None:
            self.dashboard.apps_table.set_apps(
                AppMetrics(name=a.name, path=a.path, state=AppState.STARTING)
                for a in project.apps)
        self._poll_metrics()

    def request_quit(self) -> None:
        """Stop the engine (drain, stop every app), then exit. Safe to call repeatedly."""
        if self.phase in ("stopping", "stopped"):
            return
        if self.phase == "failed":
            self.exit(return_code=self.return_code or 1)
            return
        self.phase = "stopping"
        self.workers.cancel_group(self, "engine")
        for header in self._headers():
            header.status = "stopping"
        self._stop_engine()

    async def action_quit(self) -> None:
        self.request_quit()

    @work(exclusive=True, group="engine-stop", exit_on_error=False)
    async def _stop_engine(self) -> None:
        self.notify("Stopping: draining requests and stopping every app…", timeout=60)
        try:
            await self.engine.stop()
        except Exception as exc:  # report, but still leave the terminal
            log.exception("engine stop failed")
            self.startup_error = f"stopping failed: {exc}"
            self.phase = "stopped"
            self.exit(return_code=1)
            return
        self.phase = "stopped"
        self.exit(return_code=0)

    # --- engine events -> messages (runs on the loop, must be cheap) ----------------------

    def _on_engine_event(self, event: Event) -> None:
        if isinstance(event, RequestsCompleted):
            # Only the newest `max_rows` are ever shown (or sampled for the sparklines):
            # batches wholly older than those are dropped undecoded.
            pending = self._pending_requests
            pending.append(event)
            self._pending_count += len(event)
            while self._pending_count - len(pending[0]) >= self.max_rows:
                self._pending_count -= len(pending.popleft())
            self.post_message(RequestsArrived())
        elif isinstance(event, AppOutput):
            self._pending_output.append(event)
            self.post_message(OutputArrived())
        elif isinstance(event, AppStateChanged):
            self.post_message(AppStateChange(event))
        elif isinstance(event, BackendChanged):
            self.post_message(BackendSwitched(event.old, event.new))
        elif isinstance(event, ConfigReloaded):
            self.post_message(ConfigApplied(event))
        elif isinstance(event, ConfigRejected):
            self.post_message(ConfigRefused(event.message))
        elif isinstance(event, EngineMessage):
            self.post_message(EngineNotice(event.level, event.text, event.app))

    # --- metrics poll -------------------------------------------------------------------

    @work(exclusive=True, group="metrics", exit_on_error=False)
    async def _poll_metrics(self) -> None:
        try:
            metrics = self.engine.metrics()
        except Exception:
            log.exception("metrics poll failed")
            metrics = None
        finally:
            # The next poll is scheduled only once this one is done, so polls never overlap.
            if self.phase == "running":
                self.set_timer(self.poll_interval, self._next_poll)
        if metrics is not None:
            self.post_message(MetricsUpdated(metrics))

    def _next_poll(self) -> None:
        if self.phase == "running":
            self._poll_metrics()

    # --- messages -> screens ------------------------------------------------------------

    @property
    def dashboard(self) -> DashboardScreen:
        found = self._dashboard()
        if found is None:
            raise LookupError("the dashboard is not mounted")
        return found

    def _dashboard(self) -> DashboardScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, DashboardScreen)), None)

    def _headers(self) -> list[HeaderBar]:
        return [h for s in self.screen_stack for h in s.query(HeaderBar)]

    def on_metrics_updated(self, message: MetricsUpdated) -> None:
        if self.phase not in ("running", "stopping"):
            return
        self.metrics = message.metrics
        self.history.tick(message.metrics)
        for header in self._headers():
            header.update_from_metrics(message.metrics)
        if (dashboard := self._dashboard()) is not None:
            dashboard.show_metrics(message.metrics, self.engine.project)

    def on_requests_arrived(self) -> None:
        # At most every REQUESTS_EVERY seconds: under load, each refresh decodes the newest
        # `max_rows` of what arrived meanwhile, not every request (the TUI's cost stays flat).
        wait = self._requests_shown_at + REQUESTS_EVERY - time.monotonic()
        if wait > 0:
            if self._requests_timer is None:
                self._requests_timer = self.set_timer(wait, self._show_requests)
            return
        self._show_requests()

    def _show_requests(self) -> None:
        self._requests_timer = None
        self._requests_shown_at = time.monotonic()
        records = self._take_requests()
        if records and (dashboard := self._dashboard()) is not None:
            self.history.observe(records)
            dashboard.add_requests(records)

    def _take_requests(self) -> list[RequestRecord]:
        """The newest `max_rows` pending requests, oldest first, decoded now (only these)."""
        chunks: list[tuple[RequestRecord, ...]] = []
        need = self.max_rows
        pending = self._pending_requests
        while pending and need > 0:
            chunk = pending.pop().latest(need)
            chunks.append(chunk)
            need -= len(chunk)
        pending.clear()
        self._pending_count = 0
        return [record for chunk in reversed(chunks) for record in chunk]

    def on_output_arrived(self) -> None:
        lines = list(self._pending_output)
        self._pending_output.clear()
        for screen in self.screen_stack:
            if isinstance(screen, LogsScreen):
                screen.add_lines(lines)

    def on_app_state_change(self, message: AppStateChange) -> None:
        ev = message.event
        changes: dict[str, Any] = {"state": ev.new, "pid": ev.pid, "restarts": ev.restarts}
        if ev.port is not None:
            changes["port"] = ev.port
        if (dashboard := self._dashboard()) is not None:
            dashboard.apps_table.update_app(ev.app, **changes)
        if self.phase != "running":
            return  # starting up or stopping: every app changes state, no news there
        reason = f": {ev.reason}" if ev.reason else ""
        if ev.new is AppState.FAILED:
            self.notify(f"{ev.app} failed{reason}", title="App failed", severity="error",
                        timeout=10)
        elif ev.new is AppState.RESTARTING:
            self.notify(f"{ev.app} is restarting (restart {ev.restarts}){reason}",
                        title="App restarting", severity="warning")
        elif ev.new is AppState.UNHEALTHY:
            self.notify(f"{ev.app} is unhealthy{reason}", severity="warning")
        elif ev.new is AppState.STOPPED:
            self.notify(f"{ev.app} stopped{reason}")
        elif ev.new is AppState.HEALTHY and ev.old in (
                AppState.RESTARTING, AppState.UNHEALTHY, AppState.STARTING):
            self.notify(f"{ev.app} is healthy (pid {fmt.number(ev.pid)})")

    def on_backend_switched(self, message: BackendSwitched) -> None:
        for header in self._headers():
            header.backend = message.new
            header.apps_backend = self.engine.app_backend
        self.notify(f"Backend switched: {message.old} → {message.new}", title="Backend")

    def on_config_applied(self, message: ConfigApplied) -> None:
        change = message.change
        in_place = tuple(n for n in change.changed if n not in change.restarted)
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("started", change.added), ("stopped", change.removed),
                  ("restarted", change.restarted), ("updated", in_place),
                  ("still pending (the old process keeps serving)", change.pending)) if names]
        self.notify("; ".join(parts) or "no app changed", title="Project file applied",
                    severity="warning" if change.pending else "information")

    def on_config_refused(self, message: ConfigRefused) -> None:
        self.notify(message.text, title="Project file refused", severity="error", timeout=10)

    def on_engine_notice(self, message: EngineNotice) -> None:
        if message.level == "error":
            self.notify(message.text, title=message.app or "", severity="error")
        elif message.level == "warning":
            self.notify(message.text, title=message.app or "", severity="warning")

    # --- intents: the one place that acts on what the user wants ------------------------

    def _run_command(self, coro: Awaitable[object], label: str) -> None:
        async def run() -> None:
            try:
                await coro
            except GatewayError as exc:
                self.notify(f"{label}: {exc}", severity="error")
            except Exception as exc:
                log.exception("%s failed", label)
                self.notify(f"{label} failed: {exc}", severity="error")

        # Not exclusive: cancelling a restart or a switch half-way would do more harm than
        # letting two user commands run; the engine serialises what must be serialised.
        self.run_worker(run(), group="commands", exit_on_error=False, description=label)

    def on_restart_app(self, message: RestartApp) -> None:
        self._run_command(self.engine.restart_app(message.name), f"restart {message.name}")

    def on_stop_app(self, message: StopApp) -> None:
        self._run_command(self.engine.stop_app(message.name), f"stop {message.name}")

    def on_start_app(self, message: StartApp) -> None:
        self._run_command(self.engine.start_app(message.name), f"start {message.name}")

    def on_switch_backend(self, message: SwitchBackend) -> None:
        self.notify(f"Switching the backend to {message.name}…")
        self._run_command(self.engine.switch_backend(message.name),
                          f"switch to {message.name}")

    def on_pick_backend(self) -> None:
        current = self.engine.backend

        def chosen(name: str | None) -> None:
            if name and name != current:
                self.post_message(SwitchBackend(name))

        self.push_screen(BackendPicker(self.engine.installed_backends(), current), chosen)

    def on_edit_project(self) -> None:
        path = self.engine.config_path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot read {path}: {exc}", severity="error")
            return
        self.push_screen(ConfigEditorScreen(text, path.name))

    def _editor(self) -> ConfigEditorScreen | None:
        return next((s for s in reversed(self.screen_stack)
                     if isinstance(s, ConfigEditorScreen)), None)

    def on_save_project(self, message: SaveProject) -> None:
        editor = self._editor()
        try:
            change = self.engine.preview_text(message.text)
        except ConfigError as exc:
            if editor is not None:
                editor.show_error(exc)
            return
        if editor is not None:
            editor.clear_error()
        if not message.diff:
            self.notify("No changes to apply")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._apply_project(message.text)

        self.push_screen(ApplyPreview(change, message.diff), confirmed)

    @work(exclusive=True, group="apply-config", exit_on_error=False)
    async def _apply_project(self, text: str) -> None:
        if (editor := self._editor()) is not None:
            editor.applying()
        try:
            await self.engine.apply_text(text)
        except ConfigError as exc:
            if (editor := self._editor()) is not None:
                editor.show_error(exc)
            return
        except Exception as exc:  # the engine reports; the editor must stay usable
            if (editor := self._editor()) is not None:
                editor.apply_failed(exc)
            return
        if (editor := self._editor()) is not None:
            editor.applied(text)

    def on_request_chosen(self, message: RequestChosen) -> None:
        trace = self.engine.trace(message.request_id)
        if trace is None:
            self.notify(f"{message.request_id} is no longer in the request log",
                        severity="warning")
            return
        self.push_screen(TraceScreen(trace))

    def on_show_logs(self, message: ShowLogs) -> None:
        self.push_screen(LogsScreen(message.name, self.dashboard.apps_table.app_names,
                                    self.engine.app_logs))

    def on_filter_changed(self, message: FilterChanged) -> None:
        if (dashboard := self._dashboard()) is not None:
            flt = RequestFilter(message.app, message.status_class, message.text)
            dashboard.show_filtered(flt, self.engine.request_log.snapshot())

    def on_show_requests(self, message: ShowRequests) -> None:
        self.dashboard.set_filter(message.app, message.status_class, message.text)

    def on_open_filter(self) -> None:
        self.dashboard.action_filter()

    def on_toggle_follow(self) -> None:
        self.dashboard.action_toggle_follow()

    def on_choose_export(self) -> None:
        folder = self.engine.config_path.parent
        count = len(self.engine.request_log)

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                self.post_message(ExportRequests(request.path, request.fmt,
                                                 request.include_credentials))

        self.push_screen(ExportDialog(default_export_path(folder, "jsonl"), count), chosen)

    def on_export_requests(self, message: ExportRequests) -> None:
        self._export(message.path, message.fmt, include_credentials=message.include_credentials)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _export(self, path: Path, fmt_name: str, *,
                      include_credentials: bool = False) -> None:
        # The engine copies what to write on the loop and writes it in a thread.
        try:
            written = await self.engine.export_requests(
                path, fmt_name, include_credentials=include_credentials)
        except Exception as exc:
            self.notify(f"export to {path} failed: {exc}", severity="error")
            return
        what = "with credentials" if include_credentials else "credentials masked"
        self.notify(f"Exported {written} requests to {path} ({what})", title="Export")

    def on_copy_text(self, message: CopyText) -> None:
        self.copy_to_clipboard(message.text)
        self.notify(f"Copied {message.what}")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def help_sections(self) -> list[HelpSection]:
        return [
            ("Everywhere", self.BINDINGS,
             [("ctrl+p", "command palette: every action below, per app and backend"),
              ("tab / shift+tab", "move focus")]),
            ("Dashboard", DashboardScreen.BINDINGS,
             [("enter", "on a request: its trace; on an app: its logs"),
              ("↑ ↓ pgup pgdn", "move in the focused table")]),
            ("Request filter", FilterBar.BINDINGS, []),
            ("Trace", TraceScreen.BINDINGS, []),
            ("Logs", LogsScreen.BINDINGS, []),
            ("Config editor", ConfigEditorScreen.BINDINGS, []),
        ]

    # --- for the palette ----------------------------------------------------------------

    def app_states(self) -> dict[str, AppState | str | None]:
        """Every app the dashboard shows, with its state (what the palette offers)."""
        dashboard = self._dashboard()
        if dashboard is None:
            return {}
        table = dashboard.apps_table
        return {name: table.app_state(name) for name in table.app_names}

    def palette_commands(self) -> list[PaletteCommand]:
        return palette_commands(self)

    def __repr__(self) -> str:
        # Textual reprs the app while still constructing it, hence getattr.
        return (f"<WorkbenchApp phase={getattr(self, 'phase', 'new')} "
                f"engine={getattr(self, 'engine', None)!r}>")


def create_app(engine: EngineAPI, *, poll_interval: float = 1.0,
               max_rows: int = 1000) -> WorkbenchApp:
    """The workbench around `engine` (tests and the screenshot script build it here too)."""
    return WorkbenchApp(engine, poll_interval=poll_interval, max_rows=max_rows)

