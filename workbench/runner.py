"""Run the workbench as a program: own the event loop, the engine's life and the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.schema import ProjectConfig
from gateway.errors import GatewayError
from workbench.app import WorkbenchApp, create_app


async def _hang_up(app: WorkbenchApp) -> None:
    """The terminal is gone (SIGHUP): stop every app, then leave at once. Textual would block
    for ever trying to restore a terminal that no longer exists."""
    app.request_quit()
    try:
        await app.engine.stop()  # waits for the stop the app started
    finally:
        os._exit(0)


async def _serve(app: WorkbenchApp) -> None:
    loop = asyncio.get_running_loop()
    hang_ups: list[asyncio.Task[None]] = []
    if sys.platform != "win32":  # no loop signal handlers there
        with contextlib.suppress(RuntimeError):  # not the main thread: leave signals alone
            loop.add_signal_handler(signal.SIGTERM, app.request_quit)
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: hang_ups.append(loop.create_task(_hang_up(app))))
    try:
        await app.run_async()
    finally:
        # The app stops the engine on quit; this covers every other way out (a crash).
        await app.engine.stop()


def run(config_path: Path, overrides: Mapping[str, Any] | None = None, *,
        project: ProjectConfig | None = None) -> int:
    """Run the interactive workbench on `config_path`; returns the process exit code.

    `project` is the file already validated (by the command line); without it the file is
    validated here, before any terminal work. A configuration error at start exits with 2,
    any other start failure with 1; the message is printed once the terminal is restored.
    """
    from gateway.config.loader import load_config
    from gateway.engine import Engine
    from gateway.servers.loops import loop_factory

    try:
        if project is None:
            project = load_config(config_path, overrides=overrides)
        factory = loop_factory(project.server.event_loop.value)
    except GatewayError as exc:
        print(f"pyserve-tui: {exc}", file=sys.stderr)
        return exc.exit_code
    app = create_app(Engine(config_path, overrides=dict(overrides or {}), project=project))
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(app))
    if app.startup_error:
        print(f"pyserve-tui: {app.startup_error}", file=sys.stderr)
    return app.return_code or 0
