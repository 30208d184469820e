"""Every key of the workbench, pressed through a Pilot, with its effect checked on the REAL
engine and real app processes (examples/api.py behind the gateway)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from realengine import all_healthy, app_pids, apps, real_workbench
from textual.command import CommandPalette
from textual.message import Message
from textual.notifications import Notify
from textual.widgets import Input, RadioButton, Static, TextArea
from wbsupport import ROOT, wait_until

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
        await wait_until(pilot, lambda: apps(app)["api"]["restarts"] > before["restarts"]
                         and apps(app)["api"]["state"] == "healthy"
                         and apps(app)["api"]["pid"] != before["pid"], "api restarted")
        await wait_until(pilot, lambda: app.dashboard.apps_table.get_cell("api", "restarts")
                         == str(apps(app)["api"]["restarts"]), "the table to show the restart")
        assert apps(app)["shop"]["pid"] is not None  # the other app kept running

        await pilot.press("s")
        await wait_until(pilot, lambda: apps(app)["api"]["state"] == "stopped", "api stopped")
        await wait_until(pilot, lambda: state_cell(app, "api") == "stopped", "stopped badge")

        await pilot.press("s")
        await wait_until(pilot, lambda: apps(app)["api"]["state"] == "healthy", "api started")

        shop_restarts = apps(app)["shop"]["restarts"]
        await pilot.press("down", "r")
        await wait_until(pilot, lambda: apps(app)["shop"]["restarts"] > shop_restarts,
                         "the newly selected app restarted")


async def test_a_killed_app_is_restarted_and_the_user_told(real_project: Path) -> None:
    notes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async with real_workbench(real_project, message_hook=hook) as (app, pilot):
        before = apps(app)["shop"]
        os.kill(before["pid"], signal.SIGKILL)
        await wait_until(pilot, lambda: apps(app)["shop"]["restarts"] > before["restarts"]
                         and apps(app)["shop"]["state"] == "healthy", "shop restarted")
        await wait_until(pilot, lambda: any(n.startswith("shop is restarting") for n in notes),
                         "a restart notification")
        await wait_until(pilot, lambda: any(n.startswith("shop is healthy") for n in notes),
                         "a back-to-health notification")


async def test_b_switches_the_backend(real_project: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        current = app.engine.backend
        others = [b for b in app.engine.installed_backends() if b != current]
        if not others:
            pytest.skip("only one serving backend is installed")
        target = others[0]

        await pilot.press("b")
        picker = app.screen
        assert isinstance(picker, BackendPicker)
        for _ in range(len(picker.installed)):
            if picker.installed[picker.query_one("#backend-options").highlighted or 0] \
                    == target:
                break
            await pilot.press("down")
        await pilot.press("enter")

        await wait_until(pilot, lambda: app.engine.backend == target, f"backend {target}", 90)
        await wait_until(pilot, lambda: all_healthy(app)
                         and all(a["backend"] == target for a in apps(app).values()),
                         "apps rolled over to the new backend", 90)
        # Written back once the old app processes are drained and stopped, which can come
        # after the metrics already show every app on the new backend.
        await wait_until(pilot, lambda: f'backend = "{target}"' in read(real_project),
                         "the choice written back to the project file", 60)
        await wait_until(pilot, lambda: any(h.backend == target for h in app._headers()),
                         "the header to show the backend")


async def test_requests_trace_copy_filter_and_export(real_project: Path,
                                                     tmp_path: Path) -> None:
    async with real_workbench(real_project) as (app, pilot):
        responses = await get(app, "/api/items", "/api/items", "/shop/items/99", "/ping",
                              "/api/items")
        assert [r.status_code for r in responses] == [200, 200, 404, 200, 200]
        log = app.dashboard.request_log
        await wait_until(pilot, lambda: log.row_count >= 5, "requests in the log")

        # enter: the trace of the request under the cursor, with the app's own log line
        rid = responses[-1].headers["x-request-id"]
        await wait_until(pilot, lambda: bool(getattr(app.engine.trace(rid), "app_lines", ())),
                         "the app's log line for the request")
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
        await wait_until(pilot, lambda: log.row_count == 1, "only the matching request")
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
            await wait_until(pilot, target.exists, f"the {fmt} export")
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
        await wait_until(pilot, lambda: any("listing" in ln.line for ln in view._shown),
                         "api's output in the log view")
        assert all(ln.app == "api" for ln in view._shown)

        await pilot.press("slash", *"listing")
        await wait_until(pilot, lambda: view.search == "listing", "the search to apply")
        assert view.line_count >= 1 and all("listing" in ln.line for ln in view._shown)
        await pilot.press("enter", "c")  # enter keeps the search and hides the field
        assert "listing" in app.clipboard
        assert view.search == "listing"

        await pilot.press("m")
        assert screen.app_name is None
        await pilot.press("slash")
        screen.query_one("#log-search", Input).value = ""
        await pilot.press("enter")
        await wait_until(pilot, lambda: {ln.app for ln in view._shown} >= {"api", "shop"},
                         "both apps' lines merged")

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
        await wait_until(pilot, lambda: apps(app).get("extra", {}).get("state") == "healthy",
                         "the added app healthy", 60)
        assert 'name = "extra"' in read(real_project)
        await wait_until(pilot, lambda: "extra" in app.dashboard.apps_table.app_names,
                         "the added app in the table")
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
        await wait_until(pilot, lambda: apps(app)["shop"]["restarts"] > restarts,
                         "shop restarted from the palette")
        await wait_until(pilot, lambda: all_healthy(app), "healthy again")

        assert app_pids(app)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.phase == "stopped", "the engine to stop", 60)
    assert app.return_code == 0  # real_workbench then checks that no process is left
