"""What applying an edited project file will do: apps to start, stop, restart, and the diff."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gateway.events import ConfigReloaded


def change_summary(change: ConfigReloaded) -> Text:
    text = Text()
    in_place = tuple(n for n in change.changed if n not in change.restarted)
    for label, names, style in (("start", change.added, "#2e9e4f"),
                                ("stop", change.removed, "#c83737"),
                                ("restart", change.restarted, "#d9822b"),
                                ("update in place", in_place, "#2a7fd4")):
        if names:
            text.append(f"{label}: ", style=f"bold {style}")
            text.append(", ".join(names) + "\n")
    if not text:
        text.append("No app changes; the gateway pipeline is rebuilt, every app keeps running.")
    else:
        text.append("Other apps keep their process.", style="dim")
    return text


def coloured_diff(diff: str) -> Text:
    text = Text()
    for line in diff.splitlines():
        style = ("#2e9e4f" if line.startswith("+") else "#c83737" if line.startswith("-")
                 else "#2a7fd4" if line.startswith("@@") else "")
        text.append(line + "\n", style=style)
    text.rstrip()
    return text


class ApplyPreview(ModalScreen[bool]):
    """Dismisses with True to apply, False to go back to editing."""

    BINDINGS = [
        Binding("y,enter", "apply", "Apply"),
        Binding("n,escape", "cancel", "Keep editing"),
    ]

    def __init__(self, change: ConfigReloaded, diff: str) -> None:
        super().__init__(id="apply-preview")
        self.change = change
        self.diff = diff

    def compose(self) -> ComposeResult:
        with Vertical(id="apply-dialog"):
            yield Static(Text("Apply these changes?", style="bold"), id="apply-heading")
            yield Static(change_summary(self.change), id="apply-summary")
            with VerticalScroll(id="apply-diff-scroll"):
                yield Static(coloured_diff(self.diff), id="apply-diff")
            with Horizontal(id="apply-buttons"):
                yield Button("Apply (y)", variant="primary", id="apply-yes")
                yield Button("Keep editing (n)", id="apply-no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "apply-yes")

    def action_apply(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
