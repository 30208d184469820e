"""`b`: choose the serving backend among the installed ones."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class BackendPicker(ModalScreen[str | None]):
    """Dismisses with the chosen backend name, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, installed: list[str], current: str) -> None:
        super().__init__(id="backend-picker")
        self.installed = installed
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="backend-dialog"):
            yield Static(Text("Switch the serving backend", style="bold"))
            yield Static(Text("Apps that inherit the backend roll over without dropping "
                              "requests; the choice is written to the project file.",
                              style="dim"), id="backend-help")
            options = []
            for name in self.installed:
                label = Text(name, style="bold" if name == self.current else "")
                if name == self.current:
                    label.append("  (current)", style="dim")
                options.append(Option(label, id=name))
            yield OptionList(*options, id="backend-options")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.installed:
            options.highlighted = self.installed.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
