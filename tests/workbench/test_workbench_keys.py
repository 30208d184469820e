"""Every key of the workbench, pressed through a Pilot, with its effect checked on the REAL
engine and real app processes (examples/api.py behind the gateway)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from textual.command import CommandPalette
from textual.message import Message
from textual.notifications import Notify
from textual.widgets import Input, RadioButton, Static, TextArea

from tests.support.harness import ROOT, wait_until
from tests.support.realengine import all_healthy, app_pids, apps, real_workbench
from workbench.screens.apply_preview import ApplyPreview
from workbench.screens.backend_picker import BackendPicker
from workbench.screens.config_editor import ConfigEditorScreen
from workbench.screens.dashboard import DashboardScreen
from workbench.screens.export_dialog import ExportDialog
from workbench.screens.help import HelpScreen
from workbench.screens.logs import LogsScreen
from workbench.screens.trace import TraceScreen

pytestmark = pytest.mark.slow


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def state_cell(app, name: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.dashboard.apps_table.get_cell(name, "state")).strip()


async def get(app, *paths: str) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    host, port = app.engine.address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        return [await client.get(p) for p in paths]


async def test_r_restarts_and_s_stops_and_starts_the_selected_app(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        assert app.dashboard.apps_table.selected_app == "api"
        before = apps(app)["api"]

        await pilot.press("r")
        await wait_until(lambda: apps(app)["api"]["restarts"] > before["restarts"]
                         and apps(app)["api"]["state"] == "healthy"
                         and apps(app)["api"]["pid"] != before["pid"], 30.0,
                         what="api restarted", interval=0.1, pause=pilot.pause)
        await wait_until(lambda: app.dashboard.apps_table.get_cell("api", "restarts")
                         == str(apps(app)["api"]["restarts"]), 30.0,
                         what="the table to show the restart", interval=0.1, pause=pilot.pause)
        assert apps(app)["shop"]["pid"] is not None  # the other app kept running

        await pilot.press("s")
        await wait_until(lambda: apps(app)["api"]["state"] == "stopped", 30.0, what="api stopped",
                         interval=0.1, pause=pilot.pause)
        await wait_until(lambda: state_cell(app, "api") == "stopped", 30.0, what="stopped badge",
                         interval=0.1, pause=pilot.pause)

        await pilot.press("s")
        await wait_until(lambda: apps(app)["api"]["state"] == "healthy", 30.0, what="api started",
                         interval=0.1, pause=pilot.pause)

        shop_restarts = apps(app)["shop"]["restarts"]
        await pilot.press("down", "r")
        await wait_until(lambda: apps(app)["shop"]["restarts"] > shop_restarts, 30.0,
                         what="the newly selected app restarted", interval=0.1, pause=pilot.pause)


async def test_a_killed_app_is_restarted_and_the_user_told(real_project: Path) -> None:
    notes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async with real_workbench(real_project, message_hook=hook) as (app, pilot):
        before = apps(app)["shop"]
        os.kill(before["pid"], signal.SIGKILL)
        await wait_until(lambda: apps(app)["shop"]["restarts"] > before["restarts"]
                         and apps(app)["shop"]["state"] == "healthy", 30.0,
                         what="shop restarted", interval=0.1, pause=pilot.pause)
        await wait_until(lambda: any(n.startswith("shop is restarting") for n in notes), 30.0,
                         what="a restart notification", interval=0.1, pause=pilot.pause)
        await wait_until(lambda: any(n.startswith("shop is healthy") for n in notes), 30.0,
                         what="a back-to-health notification", interval=0.1, pause=pilot.pause)


async def test_b_switches_the_backend(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        # From uvicorn to the built-in front: the gateway moves to it, and the apps, which
        # run on an ASGI server, to what `auto` gives them (granian).
        assert app.engine.backend == "uvicorn"
        target, app_target = "builtin", "granian"
        assert target in app.engine.installed_backends()

        await pilot.press("b")
        picker = app.screen
        assert isinstance(picker, BackendPicker)
        for _ in range(len(picker.installed)):
            if picker.installed[picker.query_one("#backend-options").highlighted or 0] \
                    == target:
                break
            await pilot.press("down")
        await pilot.press("enter")

        await wait_until(lambda: app.engine.backend == target, 90, what=f"backend {target}",
                         interval=0.1, pause=pilot.pause)
        await wait_until(lambda: all_healthy(app)
                         and all(a["backend"] == app_target for a in apps(app).values()), 90,
                         what="apps rolled over to the new backend", interval=0.1,
                         pause=pilot.pause)
        # Written back once the old app processes are drained and stopped, which can come
        # after the metrics already show every app on the new backend.
        await wait_until(lambda: f'backend = "{target}"' in read(real_project), 60,
                         what="the choice written back to the project file", interval=0.1,
                         pause=pilot.pause)
        await wait_until(lambda: any(
            h.backend == target and h.apps_backend == app_target for h in app._headers()),
            30.0, what="the header to show what serves the gateway and the apps", interval=0.1,
            pause=pilot.pause)
        header = next(iter(app._headers()))
        assert "gateway builtin apps granian" in header.render().plain


async def test_requests_trace_copy_filter_and_export(real_project: Path,
                                                     tmp_path: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        responses = await get(app, "/api/items", "/api/items", "/shop/items/99", "/ping",
                              "/api/items")
        assert [r.status_code for r in responses] == [200, 200, 404, 200, 200]
        log = app.dashboard.request_log
        await wait_until(lambda: log.row_count >= 5, 30.0, what="requests in the log", interval=0.1,
                         pause=pilot.pause)

        # enter: the trace of the request under the cursor, with the app's own log line
        rid = responses[-1].headers["x-request-id"]
        await wait_until(lambda: bool(getattr(app.engine.trace(rid), "app_lines", ())), 30.0,
                         what="the app's log line for the request", interval=0.1, pause=pilot.pause)
        await pilot.press("tab")
        assert app.focused is log
        row = next(i for i in range(log.row_count) if log.record_at(i).request_id == rid)
        await pilot.press("home", *["down"] * row)
        assert log.selected_record is not None and log.selected_record.request_id == rid
        await pilot.press("enter")
        trace = app.screen
        assert isinstance(trace, TraceScreen)
        assert trace.request["request_id"] == rid
        assert trace.request["path"] == "/api/items"
        lines = str(trace.query_one("#trace-app-lines", Static).render())
        assert "listing 3 items" in lines

        # c: copy the trace
        await pilot.press("c")
        assert json.loads(app.clipboard)["request_id"] == rid
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)

        # c on the request log: the selected row
        await pilot.press("c")
        assert rid in app.clipboard and "/api/items" in app.clipboard

        # /: filter by text
        await pilot.press("slash", *"items/99")
        await wait_until(lambda: log.row_count == 1, 30.0, what="only the matching request",
                         interval=0.1, pause=pilot.pause)
        assert log.selected_record is not None and log.selected_record.status == 404
        await pilot.press("escape")

        # x: export as HAR, then as JSON Lines
        for fmt in ("har", "jsonl"):
            target = tmp_path / f"requests.{fmt}"
            await pilot.press("x")
            dialog = app.screen
            assert isinstance(dialog, ExportDialog)
            assert str(dialog.query_one("#export-path", Input).value).endswith(".jsonl")
            if fmt == "har":
                dialog.query_one("#fmt-har", RadioButton).value = True
                await pilot.pause()
            dialog.query_one("#export-path", Input).value = str(target)
            dialog.query_one("#export-path", Input).focus()
            await pilot.press("enter")
            await wait_until(target.exists, 30.0, what=f"the {fmt} export", interval=0.1,
                             pause=pilot.pause)
            text = target.read_text()
            if fmt == "har":
                entries = json.loads(text)["log"]["entries"]
                assert len(entries) >= 5
                assert any(e["_requestId"] == rid and e["_appLines"] for e in entries)
            else:
                rows = [json.loads(line) for line in text.splitlines()]
                assert len(rows) >= 5 and any(r["request_id"] == rid for r in rows)


async def test_l_shows_logs_with_search_and_merged_view(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        await get(app, "/api/items", "/shop/items")
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LogsScreen) and screen.app_name == "api"
        view = screen.log_view
        await wait_until(lambda: any("listing" in ln.line for ln in view._shown), 30.0,
                         what="api's output in the log view", interval=0.1, pause=pilot.pause)
        assert all(ln.app == "api" for ln in view._shown)

        await pilot.press("slash", *"listing")
        await wait_until(lambda: view.search == "listing", 30.0, what="the search to apply",
                         interval=0.1, pause=pilot.pause)
        assert view.line_count >= 1 and all("listing" in ln.line for ln in view._shown)
        await pilot.press("enter", "c")  # enter keeps the search and hides the field
        assert "listing" in app.clipboard
        assert view.search == "listing"

        await pilot.press("m")
        assert screen.app_name is None
        await pilot.press("slash")
        screen.query_one("#log-search", Input).value = ""
        await pilot.press("enter")
        await wait_until(lambda: {ln.app for ln in view._shown} >= {"api", "shop"}, 30.0,
                         what="both apps' lines merged", interval=0.1, pause=pilot.pause)

        await pilot.press("f")
        assert view.follow is False
        await pilot.press("right_square_bracket")
        assert screen.app_name == "api"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_e_refuses_a_broken_edit_and_applies_a_valid_one(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        original = read(real_project)
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, ConfigEditorScreen)
        area = editor.query_one(TextArea)

        broken = original.replace("health_check_interval = 0.5",
                                  'health_check_interval = "soon"')
        bad_line = broken.splitlines().index('health_check_interval = "soon"') + 1
        area.text = broken
        await pilot.press("ctrl+s")
        status = editor.query_one("#editor-status", Static)
        assert status.has_class("-error")
        assert f":{bad_line}:" in str(status.render())
        assert area.cursor_location[0] == bad_line - 1
        assert read(real_project) == original  # nothing written while invalid
        assert isinstance(app.screen, ConfigEditorScreen)

        extra = original.replace('[[extensions]]\ntype = "routing"', (
            '[[extensions.config.apps]]\nname = "extra"\npath = "/extra"\n'
            'app_path = "examples.api:app"\n'
            f'module_path = "{ROOT}"\n\n'
            '[[extensions]]\ntype = "routing"'))
        area.text = extra
        await pilot.press("ctrl+s")
        preview = app.screen
        assert isinstance(preview, ApplyPreview)
        assert preview.change.added == ("extra",) and not preview.change.removed
        await pilot.press("y")
        await wait_until(lambda: apps(app).get("extra", {}).get("state") == "healthy", 60,
                         what="the added app healthy", interval=0.1, pause=pilot.pause)
        assert 'name = "extra"' in read(real_project)
        await wait_until(lambda: "extra" in app.dashboard.apps_table.app_names, 30.0,
                         what="the added app in the table", interval=0.1, pause=pilot.pause)
        assert isinstance(app.screen, DashboardScreen)


async def test_help_palette_and_q_stops_every_app(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(f"{keys} {text}" for _, keys, text in app.screen.rows)
        for word in ("Restart", "Stop/start", "Backend", "Edit config", "Filter", "Export",
                     "Copy", "Logs", "Quit", "Help", "Copy trace", "Validate & apply"):
            assert word in shown, word
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)

        # The command palette offers the same actions: restart an app from it.
        restarts = apps(app)["shop"]["restarts"]
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Restart shop")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(lambda: apps(app)["shop"]["restarts"] > restarts, 30.0,
                         what="shop restarted from the palette", interval=0.1, pause=pilot.pause)
        await wait_until(lambda: all_healthy(app), 30.0, what="healthy again", interval=0.1,
                         pause=pilot.pause)

        assert app_pids(app)
        await pilot.press("q")
        await wait_until(lambda: app.phase == "stopped", 60, what="the engine to stop",
                         interval=0.1, pause=pilot.pause)
    assert app.return_code == 0  # real_workbench then checks that no process is left
