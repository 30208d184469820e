"""The command palette's provider: every key's action, plus one entry per app and backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message

from gateway.orchestrator.states import IDLE
from workbench.messages import (
    ChooseExport,
    EditProject,
    OpenFilter,
    PickBackend,
    RestartApp,
    ShowLogs,
    ShowRequests,
    StartApp,
    StopApp,
    SwitchBackend,
    ToggleFollow,
)

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
    """Every action, plus one entry per app and per other installed backend. Each entry
    posts the intent its key posts; the app acts on it."""

    def intent(message: Message) -> Callable[[], object]:
        return partial(app.post_message, message)

    cmds = [
        PaletteCommand("Edit the project file", "e: TOML editor with validation",
                       intent(EditProject())),
        PaletteCommand("Switch backend…", "b: pick an installed backend", intent(PickBackend())),
        PaletteCommand("Filter requests", "/: by text, app and status class",
                       intent(OpenFilter())),
        PaletteCommand("Follow / pause the request log", "f", intent(ToggleFollow())),
        PaletteCommand("Export the request log…", "x: JSON Lines or HAR",
                       intent(ChooseExport())),
        PaletteCommand("Logs of all apps", "L: merged output", intent(ShowLogs(None))),
        PaletteCommand("Help: every key", "?", app.action_help),
        PaletteCommand("Quit", "q: drain, stop every app, exit", app.request_quit),
    ]
    for name, state in app.app_states().items():
        stopped = state in IDLE
        cmds += [
            PaletteCommand(f"Restart {name}", "r", intent(RestartApp(name))),
            PaletteCommand(f"{'Start' if stopped else 'Stop'} {name}", "s",
                           intent(StartApp(name) if stopped else StopApp(name))),
            PaletteCommand(f"Logs of {name}", "l", intent(ShowLogs(name))),
            PaletteCommand(f"Requests of {name}", "filter the request log",
                           intent(ShowRequests(app=name))),
        ]
    for backend in app.engine.installed_backends():
        if backend != app.engine.backend:
            cmds.append(PaletteCommand(f"Switch backend to {backend}", "b",
                                       intent(SwitchBackend(backend))))
    return cmds
