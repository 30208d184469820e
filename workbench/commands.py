"""The command palette's provider: every key's action, plus one entry per app and backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from workbench.app import WorkbenchApp


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    run: Callable[[], object]


class WorkbenchCommands(Provider):
    """Offers `WorkbenchApp.palette_commands()` (built fresh each time the palette opens)."""

    def _commands(self) -> list[PaletteCommand]:
        return cast("WorkbenchApp", self.app).palette_commands()

    async def discover(self) -> Hits:
        for cmd in self._commands():
            yield DiscoveryHit(cmd.title, cmd.run, help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in self._commands():
            score = matcher.match(cmd.title)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.title), cmd.run, text=cmd.title,
                          help=cmd.help)
