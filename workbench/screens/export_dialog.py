"""`x`: export the request log with its traces, as JSON Lines or HAR, to a file.

Exports are sanitized (credential headers and token-like query parameters masked); the
"Include credentials" checkbox, off whenever the dialog opens, asks for them as they were."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, RadioButton, RadioSet, Static

FORMATS: dict[str, str] = {"jsonl": "JSON Lines (.jsonl)", "har": "HAR 1.2 (.har)"}


@dataclass(frozen=True)
class ExportRequest:
    path: Path
    fmt: str
    include_credentials: bool = False


def default_export_path(folder: Path, fmt: str, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return folder / f"requests-{stamp}.{fmt}"


class ExportDialog(ModalScreen[ExportRequest | None]):
    """Asks for a format and a path (prefilled); dismisses with an `ExportRequest`."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default_path: Path, count: int) -> None:
        super().__init__(id="export-dialog")
        self.default_path = default_path
        self.count = count

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Text(f"Export {self.count} requests with their traces", style="bold"))
            with RadioSet(id="export-format"):
                for i, (fmt, label) in enumerate(FORMATS.items()):
                    yield RadioButton(label, value=i == 0, id=f"fmt-{fmt}")
            yield Input(str(self.default_path), id="export-path")
            yield Checkbox("Include credentials (Authorization, cookies, tokens)", value=False,
                           id="export-credentials")
            with Horizontal(id="export-buttons"):
                yield Button("Export", variant="primary", id="export-ok")
                yield Button("Cancel", id="export-cancel")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @property
    def fmt(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.id.removeprefix("fmt-") if pressed and pressed.id else "jsonl"

    def on_radio_set_changed(self) -> None:
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value)
        if path.suffix.lstrip(".") in FORMATS:
            path_input.value = str(path.with_suffix(f".{self.fmt}"))

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        if not value:
            self.notify("Give a file path", severity="warning")
            return
        include = self.query_one("#export-credentials", Checkbox).value
        self.dismiss(ExportRequest(Path(value).expanduser(), self.fmt, include))

    def action_cancel(self) -> None:
        self.dismiss(None)
