"""Logs of one app (stdout and stderr) or of all apps merged, with follow and search."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from workbench.messages import CopyText
from workbench.widgets.log_view import LogView

#: Reads the kept lines of one app (None: every app merged); handed down by the app.
LineReader = Callable[[str | None], Sequence[Any]]


class LogsScreen(Screen[None]):
    """`app_name` None shows every app's lines merged in time order; `read_lines` gives the
    kept lines (the app hands down the engine's), `add_lines` the new ones."""

    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("f", "toggle_follow", "Follow/pause"),
        Binding("slash", "search", "Search"),
        Binding("m", "merged", "All apps/this app"),
        Binding("left_square_bracket", "cycle(-1)", "Prev app"),
        Binding("right_square_bracket", "cycle(1)", "Next app"),
        Binding("c", "copy", "Copy lines"),
    ]

    def __init__(self, app_name: str | None, apps: list[str], read_lines: LineReader) -> None:
        super().__init__(id="logs")
        self.app_name = app_name
        self.apps = apps
        self.read_lines = read_lines
        self._last_app = app_name or (apps[0] if apps else None)
        self._search_timer: Timer | None = None

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static(id="logs-title")
        yield LogView(id="log-view")
        yield Input(placeholder="search: Enter keeps it, Escape hides the field", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        self._load()
        self.log_view.focus()

    def _load(self) -> None:
        view = self.log_view
        view.app_filter = self.app_name
        view.show_lines(self.read_lines(self.app_name))
        self._update_title()

    def _update_title(self) -> None:
        view = self.log_view
        who = self.app_name if self.app_name is not None else "all apps"
        parts = [f" Logs: {who} ", "following" if view.follow else "paused"]
        if view.search:
            parts.append(f"search: {view.search!r} ({view.line_count} lines)")
        self.query_one("#logs-title", Static).update("  ·  ".join(parts))

    def add_lines(self, lines: Iterable[Any]) -> None:
        """New output from the engine (called by the app)."""
        self.log_view.add_lines(lines)

    # --- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_class("-visible"):
            search.remove_class("-visible")
            self.log_view.focus()
            return
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        self.log_view.follow = not self.log_view.follow
        self._update_title()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("-visible")
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        # Debounced: each search re-reads and re-renders up to thousands of lines.
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(0.15, self._apply_search)

    def _apply_search(self) -> None:
        self._search_timer = None
        value = self.query_one("#log-search", Input).value.strip()
        if value != self.log_view.search:
            self.log_view.search = value
            self._load()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter keeps the search (the title shows it) and gives the keys back to the log.
        self._apply_search()
        event.input.remove_class("-visible")
        self.log_view.focus()

    def action_merged(self) -> None:
        if self.app_name is None:
            self.app_name = self._last_app
        else:
            self._last_app, self.app_name = self.app_name, None
        self._load()

    def action_cycle(self, step: int) -> None:
        if not self.apps:
            return
        if self.app_name is None:
            self.app_name = self.apps[0]
        else:
            i = self.apps.index(self.app_name) if self.app_name in self.apps else 0
            self.app_name = self.apps[(i + step) % len(self.apps)]
        self._last_app = self.app_name
        self._load()

    def action_copy(self) -> None:
        view = self.log_view
        self.post_message(CopyText(view.copy_text(), what=f"{view.line_count} log lines"))

    def __repr__(self) -> str:
        return f"<LogsScreen app={getattr(self, 'app_name', None)!r}>"
