"""The command palette's provider: every key's action, plus one entry per app and backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gateway.orchestrator.states import IDLE

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


def palette_commands(app: WorkbenchApp) -> list[PaletteCommand]:
    """Every action, plus one entry per app and per other installed backend."""
    cmds = [
        PaletteCommand("Edit the project file", "e: TOML editor with validation",
                       app.edit_config),
        PaletteCommand("Switch backend…", "b: pick an installed backend", app.pick_backend),
        PaletteCommand("Filter requests", "/: by text, app and status class",
                       app.dashboard.action_filter),
        PaletteCommand("Follow / pause the request log", "f",
                       app.dashboard.action_toggle_follow),
        PaletteCommand("Export the request log…", "x: JSON Lines or HAR",
                       app.export_dialog),
        PaletteCommand("Logs of all apps", "L: merged output", partial(app.open_logs, None)),
        PaletteCommand("Help: every key", "?", app.action_help),
        PaletteCommand("Quit", "q: drain, stop every app, exit", app.request_quit),
    ]
    table = app.dashboard.apps_table
    for name in table.app_names:
        stopped = table.app_state(name) in IDLE
        cmds += [
            PaletteCommand(f"Restart {name}", "r", partial(app.restart_app, name)),
            PaletteCommand(f"{'Start' if stopped else 'Stop'} {name}", "s",
                           partial(app.toggle_app, name)),
            PaletteCommand(f"Logs of {name}", "l", partial(app.open_logs, name)),
            PaletteCommand(f"Requests of {name}", "filter the request log",
                           partial(app.dashboard.set_filter, app=name)),
        ]
    for backend in app.engine.installed_backends():
        if backend != app.engine.backend:
            cmds.append(PaletteCommand(f"Switch backend to {backend}", "b",
                                       partial(app.switch_backend, backend)))
    return cmds
