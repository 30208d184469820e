"""Edit the project file in place: TOML highlighting, validation before anything is written,
a preview of what applying will change, then a live apply."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea
from textual.widgets.text_area import LanguageDoesNotExist

from gateway.errors import ConfigError
from workbench.screens.apply_preview import ApplyPreview

if TYPE_CHECKING:
    from workbench.app import WorkbenchApp


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
    def workbench(self) -> WorkbenchApp:
        return cast("WorkbenchApp", self.app)

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
        try:
            change = self.workbench.engine.preview_text(text)
        except ConfigError as exc:
            self.show_error(exc)
            return
        self._clear_error()
        diff = text_diff(self.original, text, self.file_name)
        if not diff:
            self.notify("No changes to apply")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.apply(text)

        self.app.push_screen(ApplyPreview(change, diff), confirmed)

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

    def _clear_error(self) -> None:
        status = self.query_one("#editor-status", Static)
        status.remove_class("-error")
        status.update("")

    @work(exclusive=True, group="apply-config", exit_on_error=False)
    async def apply(self, text: str) -> None:
        status = self.query_one("#editor-status", Static)
        status.update(" applying…")
        try:
            await self.workbench.engine.apply_text(text)
        except ConfigError as exc:
            self.show_error(exc)
            return
        except Exception as exc:  # the engine reports; the editor must stay usable
            status.add_class("-error")
            status.update(f" applying failed: {exc}")
            return
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
