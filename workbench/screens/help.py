"""`?`: every key of every screen, read from the screens' own bindings so it cannot drift."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSection = tuple[str, Sequence[BindingType], Sequence[tuple[str, str]]]


class HelpScreen(ModalScreen[None]):
    """Sections of (title, bindings, extra (key, description) rows)."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help")]

    def __init__(self, sections: Iterable[HelpSection]) -> None:
        super().__init__(id="help")
        self.sections = list(sections)
        self.rows: list[tuple[str, str, str]] = []
        """(section, keys, description) of every row shown."""

    def _keys(self, binding: Binding) -> str:
        keys = [k.strip() for k in binding.key.split(",")]
        return " / ".join(self.app.get_key_display(Binding(k, binding.action)) for k in keys)

    def _table(self, title: str, bindings: Sequence[BindingType],
               extra: Sequence[tuple[str, str]]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold #2a7fd4", no_wrap=True, min_width=14)
        table.add_column()
        rows = [(self._keys(b), b.description or b.action)
                for b in (item if isinstance(item, Binding) else Binding(*item)
                          for item in bindings)]
        for keys, description in [*rows, *extra]:
            table.add_row(keys, description)
            self.rows.append((title, keys, description))
        return table

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(Text("Keys", style="bold"), id="help-heading")
            for title, bindings, extra in self.sections:
                section = Static(self._table(title, bindings, extra), classes="help-section")
                section.border_title = title
                yield section

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
