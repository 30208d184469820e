"""Run the workbench around the REAL engine with real app processes, and clean up after it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.pilot import Pilot

from gateway.engine import Engine
from gateway.events import AppStateChanged
from tests.support.harness import assert_nothing_left, wait_until
from workbench.app import WorkbenchApp, create_app


def apps(app: WorkbenchApp) -> dict[str, dict[str, Any]]:
    return dict(app.engine.metrics().to_json()["apps"])


def app_pids(app: WorkbenchApp) -> set[int]:
    return {a["pid"] for a in apps(app).values() if a.get("pid")}


def all_healthy(app: WorkbenchApp) -> bool:
    current = apps(app)
    return bool(current) and all(a.get("state") == "healthy" for a in current.values())


@contextlib.asynccontextmanager
async def real_workbench(config: Path, size: tuple[int, int] = (120, 40),
                         message_hook: Callable[[Message], None] | None = None,
                         ) -> AsyncIterator[tuple[WorkbenchApp, Pilot[None]]]:
    """The workbench on a real engine, its apps healthy. On the way out the engine is
    stopped (whatever the test did) and no process may be left."""
    engine = Engine(config)
    app = create_app(engine, poll_interval=0.3)
    seen: set[int] = set()

    def remember(event: object) -> None:
        if isinstance(event, AppStateChanged) and event.pid:
            seen.add(event.pid)

    engine.events.subscribe(remember)
    try:
        async with app.run_test(size=size, message_hook=message_hook) as pilot:
            await wait_until(lambda: app.phase != "starting", 60, what="the engine to start",
                             interval=0.1, pause=pilot.pause)
            assert app.phase == "running", app.startup_error
            await wait_until(lambda: all_healthy(app), 60, what="every app healthy", interval=0.1,
                             pause=pilot.pause)
            seen |= app_pids(app)
            yield app, pilot
    finally:
        await engine.stop()
        # Every app process is gone, and no descendant of this test process is left.
        await assert_nothing_left(seen, children=True, timeout=15.0)
