"""The apps table names why an app failed, on the REAL engine with real app processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.support.harness import wait_until
from tests.support.realengine import apps, real_workbench

pytestmark = pytest.mark.slow


async def test_the_row_shows_the_cause_of_a_crash(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        table = app.dashboard.apps_table
        assert str(table.get_cell("shop", "cause")) == "-"
        before = apps(app)["shop"]
        server = psutil.Process(before["pid"]).children()[0]  # the server under its guard
        os.kill(server.pid, signal.SIGKILL)
        await wait_until(lambda: apps(app)["shop"]["state"] == "healthy"
                         and apps(app)["shop"]["pid"] != before["pid"], 30.0,
                         what="shop restarted", interval=0.1, pause=pilot.pause)
        await wait_until(lambda: str(table.get_cell("shop", "cause"))
                         == "killed by SIGKILL", 30.0,
                         what="the row to name the signal", interval=0.1, pause=pilot.pause)
        assert str(table.get_cell("api", "cause")) == "-"
        assert "last error: killed by SIGKILL" in app.dashboard.app_summary("shop")


def test_the_cause_cell_puts_a_pending_change_first() -> None:
    from gateway.orchestrator.states import AppState
    from gateway.snapshots import AppMetrics
    from workbench.formatting import cause_text, health_cell

    cell = cause_text(AppMetrics("web", AppState.HEALTHY, pending="configuration changed",
                                 last_error="cannot import 'mod': No module named 'x'"))
    assert cell.plain.startswith("pending (configuration changed): cannot import")
    assert cause_text(AppMetrics("web", AppState.HEALTHY)).plain == "-"
    assert health_cell("ok", "any answer < 500 (no /health route)").plain == "ok · any <500"
    assert health_cell("ok", "GET /health").plain == "ok"


def test_the_apply_preview_tells_restarts_from_changes_in_place() -> None:
    from gateway.events import ConfigReloaded
    from workbench.screens.apply_preview import change_summary

    text = change_summary(ConfigReloaded(("new",), (), ("api", "web"), restarted=("api",)))
    assert text.plain.splitlines()[:3] == ["start: new", "restart: api", "update in place: web"]
