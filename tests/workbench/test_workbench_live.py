"""Live behaviour on the fake engine: floods stay bounded and smooth, follow/pause, filters,
notifications for crashes, restarts and failures (asserted on the Notify messages)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual.message import Message
from textual.notifications import Notify
from textual.widgets import Static

from gateway.events import AppStateChanged, RequestsCompleted
from gateway.orchestrator.states import AppState
from tests.support.fake_engine import FakeEngine, make_record
from tests.support.harness import wait_until
from workbench.app import WorkbenchApp, create_app
from workbench.messages import RequestsArrived
from workbench.screens.config_editor import ConfigEditorScreen


def started(folder: Path, *, max_rows: int = 1000, poll_interval: float = 0.2,
            ) -> tuple[WorkbenchApp, FakeEngine]:
    engine = FakeEngine(folder / "workbench.toml")
    return create_app(engine, poll_interval=poll_interval, max_rows=max_rows), engine


def flood(engine: FakeEngine, start: int, count: int) -> None:
    records = tuple(make_record(start + i) for i in range(count))
    engine.request_log.records.extend(records)
    engine.events.emit(RequestsCompleted(records))


async def test_a_flood_keeps_the_table_bounded_and_the_loop_responsive(shop_dir: Path) -> None:
    app, engine = started(shop_dir, max_rows=500)
    arrived: list[Message] = []

    def hook(message: Message) -> None:
        if isinstance(message, RequestsArrived):
            arrived.append(message)

    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        log = app.dashboard.request_log
        lags: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.02)
                lags.append(time.perf_counter() - t - 0.02)

        prober = asyncio.create_task(probe())
        n = 1000
        for _ in range(12):  # 3 s of 4 batches a second, 1000 requests each
            flood(engine, n, 1000)
            n += 1000
            await asyncio.sleep(0.25)
        await pilot.pause(0.3)
        stop.set()
        await prober
        assert log.row_count == 500
        assert log.record_at(log.row_count - 1).request_id == make_record(n - 1).request_id
        assert max(lags) < 0.5, f"the loop stalled {max(lags):.3f}s"
        assert len(arrived) <= 13  # one message per batch at most, never one per request


async def test_under_load_only_the_newest_rows_are_decoded(shop_dir: Path) -> None:
    """Many small batches between two refreshes: the table gets the newest `max_rows`, and
    only those are decoded (the TUI's cost does not grow with the request rate)."""
    app, engine = started(shop_dir, max_rows=300)
    decoded: list[int] = []

    def decode(i: int) -> object:
        decoded.append(i)
        return make_record(i)

    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine",
                         interval=0.1, pause=pilot.pause)
        log = app.dashboard.request_log
        for batch in range(50):  # 3200 requests in 64s, all before the next refresh
            engine.events.emit(RequestsCompleted(encoded=range(batch * 64, batch * 64 + 64),
                                                 decode=decode))
        newest = make_record(50 * 64 - 1).request_id
        await wait_until(lambda: log.row_count == 300 and
                         log.record_at(299).request_id == newest, 5.0,
                         what="the newest rows", interval=0.02, pause=pilot.pause)
        assert sorted(decoded) == list(range(50 * 64 - 300, 50 * 64))


async def test_f_pauses_and_resumes_following(shop_dir: Path) -> None:
    app, engine = started(shop_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        log = app.dashboard.request_log
        before = log.row_count
        await pilot.press("f")
        assert log.follow is False
        flood(engine, 5000, 7)
        await wait_until(lambda: log.held == 7, 30.0, what="held rows", interval=0.1,
                         pause=pilot.pause)
        assert log.row_count == before
        assert "paused, 7 new" in str(app.dashboard.query_one("#requests-pane").border_title)
        await pilot.press("f")
        assert log.follow is True and log.held == 0
        assert log.row_count == before + 7
        assert log.selected_record is not None
        assert log.selected_record.request_id == make_record(5006).request_id


async def test_filter_by_app_status_class_and_text(shop_dir: Path) -> None:
    app, _ = started(shop_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        log = app.dashboard.request_log
        app.dashboard.set_filter(app="api", status_class="5xx")
        await wait_until(lambda: 0 < log.row_count < 60, 30.0, what="the filtered log",
                         interval=0.1, pause=pilot.pause)
        rows = [log.record_at(i) for i in range(log.row_count)]
        assert all(r.app == "api" and r.status >= 500 for r in rows)
        app.dashboard.set_filter(text="checkout")
        await wait_until(lambda: all("checkout" in log.record_at(i).path
                                            for i in range(log.row_count)), 30.0,
                                            what="text filter", interval=0.1, pause=pilot.pause)
        app.dashboard.set_filter()
        await wait_until(lambda: log.row_count == 60, 30.0, what="the whole log back", interval=0.1,
                         pause=pilot.pause)


async def test_crashes_restarts_and_failures_are_notified(shop_dir: Path) -> None:
    app, engine = started(shop_dir, poll_interval=3600)  # the fake's fixed pids stay out
    notes: list[Notify] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message)

    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        assert not notes  # starting up is no news
        emit = engine.events.emit
        s = AppState
        emit(AppStateChanged("api", s.HEALTHY, s.RESTARTING, 41021, 9001, "exited with -9", 2))
        emit(AppStateChanged("api", s.RESTARTING, s.HEALTHY, 41099, 9001, "", 2))
        emit(AppStateChanged("jobs", s.UNHEALTHY, s.FAILED, None, None,
                             "gave up after 5 restarts", 5))
        await wait_until(lambda: len(notes) >= 3, 30.0, what="three notifications", interval=0.1,
                         pause=pilot.pause)
        by_text = {n.notification.message: n.notification.severity for n in notes}
        assert by_text["api is restarting (restart 2): exited with -9"] == "warning"
        assert by_text["api is healthy (pid 41099)"] == "information"
        assert by_text["jobs failed: gave up after 5 restarts"] == "error"
        assert app.dashboard.apps_table.app_state("jobs") == "failed"
        assert app.dashboard.apps_table.get_cell("api", "pid") == "41099"


async def test_escape_in_the_editor_asks_before_discarding_an_edit(shop_dir: Path) -> None:
    app, engine = started(shop_dir, poll_interval=3600)
    original = engine.config_path.read_text()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        await pilot.press("e")
        assert isinstance(app.screen, ConfigEditorScreen)
        await pilot.press("escape")  # unmodified: closes at once
        assert not isinstance(app.screen, ConfigEditorScreen)
        await pilot.press("e", "x", "escape")
        assert isinstance(app.screen, ConfigEditorScreen)
        assert "unsaved" in str(app.screen.query_one("#editor-status", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfigEditorScreen)
    assert engine.config_path.read_text() == original
