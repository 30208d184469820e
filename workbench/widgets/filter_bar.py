"""The request filter: text, app and status class. Shown by `/`, hidden by Escape."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Input, Select

from workbench.formatting import STATUS_CLASSES
from workbench.messages import FilterChanged


class FilterBar(Horizontal):
    """Posts `FilterChanged` whenever any of its three fields changes."""

    DEFAULT_CSS = """
    FilterBar {
        height: auto;
        display: none;
    }
    FilterBar.-visible {
        display: block;
    }
    FilterBar Input {
        width: 1fr;
    }
    FilterBar Select {
        width: 20;
    }
    """

    BINDINGS = [Binding("escape", "close", "Close filter", show=True)]

    apps: reactive[tuple[str, ...]] = reactive(tuple)
    """App names offered by the app selector."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: path, method, id, status…", id="filter-text")
        yield Select[str]([], prompt="any app", id="filter-app")
        yield Select[str]([(c, c) for c in STATUS_CLASSES], prompt="any status",
                          id="filter-status")

    def watch_apps(self, apps: tuple[str, ...]) -> None:
        select = self.query_one("#filter-app", Select)
        current = select.value
        select.set_options([(name, name) for name in apps])
        if isinstance(current, str) and current in apps:
            select.value = current

    def open(self) -> None:
        self.add_class("-visible")
        self.query_one("#filter-text", Input).focus()

    def action_close(self) -> None:
        self.remove_class("-visible")
        self.screen.focus_next()

    @property
    def current(self) -> FilterChanged:
        app = self.query_one("#filter-app", Select).value
        status = self.query_one("#filter-status", Select).value
        return FilterChanged(app if isinstance(app, str) else None,
                             status if isinstance(status, str) else None,
                             self.query_one("#filter-text", Input).value.strip())

    def set_filter(self, app: str | None = None, status_class: str | None = None,
                   text: str = "") -> None:
        """Fill the fields (the palette and tests use this)."""
        self.query_one("#filter-text", Input).value = text
        self.query_one("#filter-app", Select).value = app if app else Select.NULL
        self.query_one("#filter-status", Select).value = (status_class if status_class
                                                          else Select.NULL)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.current)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.current)
