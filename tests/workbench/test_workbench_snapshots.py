"""SVG snapshots of each main view, on the deterministic fake engine.

Regenerate after an intended change with
`python -m pytest tests/workbench/test_workbench_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from tests.support.fake_engine import LATENCY, RATE, FakeEngine
from workbench.app import WorkbenchApp, create_app
from workbench.screens.config_editor import ConfigEditorScreen


def fake_app(folder: Path) -> WorkbenchApp:
    # One metrics poll only: the numbers on screen never move while a snapshot is taken.
    return create_app(FakeEngine(folder / "workbench.toml"), poll_interval=3600)


async def ready(pilot: Pilot[None]) -> None:
    """Wait for the fake engine to start and its first metrics to show; seed sparklines."""
    app = pilot.app
    assert isinstance(app, WorkbenchApp)
    for _ in range(100):
        if app.phase == "running" and app.metrics is not None:
            break
        await pilot.pause(0.05)
    app.history.seed("api", LATENCY, RATE)
    app.history.seed("web", [x * 2 for x in LATENCY], [x / 3 for x in RATE])
    assert app.metrics is not None
    app.dashboard.show_metrics(app.metrics, app.engine.project)
    await pilot.pause()


def test_dashboard(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(80, 24), run_before=ready)


def test_dashboard_wide(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(140, 40), run_before=ready)


def test_dashboard_light_theme(snap_compare, shop_dir: Path) -> None:
    async def light(pilot: Pilot[None]) -> None:
        pilot.app.theme = "textual-light"
        await ready(pilot)

    assert snap_compare(fake_app(shop_dir), terminal_size=(120, 30), run_before=light)


def test_dashboard_filtered(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 30), run_before=ready,
                        press=["slash", *"orders"])


def test_request_trace(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 40), run_before=ready,
                        press=["tab", "up", "enter"])


def test_logs_one_app(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 24), run_before=ready,
                        press=["l"])


def test_logs_merged_with_search(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 24), run_before=ready,
                        press=["L", "slash", *"slow", "enter"])


def test_backend_picker(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(80, 24), run_before=ready,
                        press=["b"])


def test_help(snap_compare, shop_dir: Path) -> None:
    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 50), run_before=ready,
                        press=["question_mark"])


@pytest.mark.skipif(importlib.util.find_spec("tree_sitter_toml") is None,
                    reason="TOML highlighting needs textual[syntax]")
def test_config_editor_with_error(snap_compare, shop_dir: Path) -> None:
    async def broken_edit(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("e")
        editor = pilot.app.screen
        assert isinstance(editor, ConfigEditorScreen)
        area = editor.query_one(TextArea)
        area.text = area.text.replace('port = 8000', 'port = "eight thousand"')
        await pilot.pause()
        await pilot.press("ctrl+s")

    assert snap_compare(fake_app(shop_dir), terminal_size=(100, 30), run_before=broken_edit)


@pytest.mark.skipif(importlib.util.find_spec("tree_sitter_toml") is None,
                    reason="TOML highlighting needs textual[syntax]")
def test_apply_preview(snap_compare, shop_dir: Path) -> None:
    async def valid_edit(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("e")
        area = pilot.app.screen.query_one(TextArea)
        area.text = area.text.replace("workers = 2", "workers = 4").replace(
            '[[extensions.config.apps]]\nname = "jobs"',
            '[[extensions.config.apps]]\nname = "mail"\npath = "/mail"\n'
            'app_path = "shop.mail:app"\n\n[[extensions.config.apps]]\nname = "jobs"')
        await pilot.pause()
        await pilot.press("ctrl+s")

    assert snap_compare(fake_app(shop_dir), terminal_size=(80, 24), run_before=valid_edit)
