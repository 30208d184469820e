"""Edit the project file in place: TOML highlighting, validation before anything is written,
a preview of what applying will change, then a live apply.

The editor says what the user wants (`SaveProject`); the app validates, previews and applies,
and tells the editor how it went (`show_error`, `applying`, `apply_failed`, `applied`).
"""

from __future__ import annotations

import difflib

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea
from textual.widgets.text_area import LanguageDoesNotExist

from gateway.errors import ConfigError
from workbench.messages import SaveProject


def toml_editor(text: str) -> TextArea:
    """A code editor for `text`: TOML-highlighted when tree-sitter's TOML grammar is installed
    (``pip install "textual[syntax]"``), plain text otherwise."""
    try:
        return TextArea.code_editor(text, language="toml", id="editor", soft_wrap=False)
    except LanguageDoesNotExist:
        return TextArea.code_editor(text, language=None, id="editor", soft_wrap=False)


def text_diff(before: str, after: str, name: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        fromfile=f"{name} (running)", tofile=f"{name} (edited)",
                                        n=2))


class ConfigEditorScreen(Screen[None]):
    """Ctrl+S validates; an error moves the cursor to its line and nothing is written."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Validate & apply", priority=True),
        # priority: the code editor would otherwise take Escape to move focus.
        Binding("escape", "close", "Close", priority=True),
    ]

    def __init__(self, text: str, file_name: str) -> None:
        super().__init__(id="config-editor")
        self.original = text
        self.file_name = file_name
        self._confirm_discard = False

    @property
    def editor(self) -> TextArea:
        return self.query_one(TextArea)

    def compose(self) -> ComposeResult:
        yield Static(f" Editing {self.file_name}  ·  ctrl+s validates, previews and applies",
                     id="editor-title")
        yield toml_editor(self.original)
        yield Static("", id="editor-status")
        yield Footer()

    def on_mount(self) -> None:
        self.editor.focus()

    def on_text_area_changed(self) -> None:
        self._confirm_discard = False
        status = self.query_one("#editor-status", Static)
        if status.has_class("-error"):
            return  # keep the error visible until the next save
        status.update(" modified" if self.editor.text != self.original else "")

    # --- save ---------------------------------------------------------------------------

    def action_save(self) -> None:
        text = self.editor.text
        self.post_message(SaveProject(text, text_diff(self.original, text, self.file_name)))

    def show_error(self, exc: ConfigError) -> None:
        """Show the message and put the cursor where the error is."""
        status = self.query_one("#editor-status", Static)
        status.add_class("-error")
        status.update(f" {exc}")
        area = self.editor
        if exc.line:
            row = min(max(exc.line - 1, 0), area.document.line_count - 1)
            col = max((exc.col or 1) - 1, 0)
            line_len = len(area.document.get_line(row))
            area.move_cursor((row, min(col, line_len)))  # the cursor line is highlighted
            area.scroll_cursor_visible(center=True)
        area.focus()

    def clear_error(self) -> None:
        status = self.query_one("#editor-status", Static)
        status.remove_class("-error")
        status.update("")

    def applying(self) -> None:
        self.query_one("#editor-status", Static).update(" applying…")

    def apply_failed(self, exc: Exception) -> None:
        """Applying failed for another reason than the file (the editor stays usable)."""
        status = self.query_one("#editor-status", Static)
        status.add_class("-error")
        status.update(f" applying failed: {exc}")

    def applied(self, text: str) -> None:
        # What changed is announced by the engine's ConfigReloaded event (the app notifies).
        self.original = text
        self.dismiss()

    def action_close(self) -> None:
        if self.editor.text != self.original and not self._confirm_discard:
            self._confirm_discard = True
            self.query_one("#editor-status", Static).update(
                " unsaved changes: Escape again discards them, ctrl+s applies them")
            return
        self.dismiss()
