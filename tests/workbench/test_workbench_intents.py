"""The UI sends intents: a key, a dialog or a palette entry posts what the user wants as a
message (`workbench.messages`), and the app, the one place that talks to the engine, acts
on it. Asserted on the messages (Pilot's `message_hook`) and on what the engine was asked."""

from __future__ import annotations

import ast
from pathlib import Path

from textual.message import Message
from textual.widgets import OptionList, TextArea

from tests.support.fake_engine import FakeEngine
from tests.support.harness import ROOT, wait_until
from workbench.app import WorkbenchApp, create_app
from workbench.messages import (
    ChooseExport,
    EditProject,
    ExportRequests,
    PickBackend,
    RestartApp,
    SaveProject,
    StartApp,
    StopApp,
    SwitchBackend,
)
from workbench.screens.apply_preview import ApplyPreview
from workbench.screens.backend_picker import BackendPicker
from workbench.screens.config_editor import ConfigEditorScreen
from workbench.screens.export_dialog import ExportDialog


def recorded() -> tuple[list[Message], object]:
    seen: list[Message] = []
    return seen, seen.append


def started(folder: Path) -> tuple[WorkbenchApp, FakeEngine]:
    engine = FakeEngine(folder / "workbench.toml")
    return create_app(engine, poll_interval=3600), engine


def of(seen: list[Message], kind: type[Message]) -> list[Message]:
    """The `kind` messages posted (the hook sees a bubbling message at each stop: once each)."""
    unique = {id(m): m for m in seen if isinstance(m, kind)}
    return list(unique.values())


async def test_keys_on_the_dashboard_post_intents_the_app_carries_out(shop_dir: Path) -> None:
    app, engine = started(shop_dir)
    seen, hook = recorded()
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        await pilot.press("r")
        await wait_until(lambda: ("restart", "api") in engine.calls, 30.0, what="the restart",
                         interval=0.1, pause=pilot.pause)
        await pilot.press("s")
        await wait_until(lambda: ("stop", "api") in engine.calls, 30.0, what="the stop",
                         interval=0.1, pause=pilot.pause)
        await wait_until(lambda: app.dashboard.apps_table.app_state("api") == "stopped", 30.0,
                         what="the stopped state to show", interval=0.1, pause=pilot.pause)
        await pilot.press("s")
        await wait_until(lambda: ("start", "api") in engine.calls, 30.0, what="the start",
                         interval=0.1, pause=pilot.pause)
    assert of(seen, RestartApp) == [RestartApp("api")]
    assert of(seen, StopApp) == [StopApp("api")]
    assert of(seen, StartApp) == [StartApp("api")]
    assert engine.calls == [("restart", "api"), ("stop", "api"), ("start", "api")]


async def test_the_backend_picker_posts_a_switch(shop_dir: Path) -> None:
    app, engine = started(shop_dir)
    seen, hook = recorded()
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        await pilot.press("b")
        await wait_until(lambda: isinstance(app.screen, BackendPicker), 30.0, what="the picker",
                         interval=0.1, pause=pilot.pause)
        options = app.screen.query_one(OptionList)
        options.highlighted = ["granian", "uvicorn", "hypercorn"].index("uvicorn")
        await pilot.press("enter")
        await wait_until(lambda: engine.backend == "uvicorn", 30.0, what="the switch", interval=0.1,
                         pause=pilot.pause)
    assert of(seen, PickBackend) == [PickBackend()]
    assert of(seen, SwitchBackend) == [SwitchBackend("uvicorn")]
    assert engine.calls == [("backend", "uvicorn")]


async def test_saving_in_the_editor_posts_the_text_and_the_app_applies_it(
        shop_dir: Path) -> None:
    app, engine = started(shop_dir)
    seen, hook = recorded()
    config = shop_dir / "workbench.toml"
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        await pilot.press("e")
        await wait_until(lambda: isinstance(app.screen, ConfigEditorScreen), 30.0, what="editor",
                         interval=0.1, pause=pilot.pause)
        editor = app.screen.query_one(TextArea)
        edited = editor.text.replace("port = 8000", "port = 8000\nbacklog = 512")
        editor.text = edited
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, ApplyPreview), 30.0, what="the preview",
                         interval=0.1, pause=pilot.pause)
        await pilot.press("y")
        await wait_until(lambda: config.read_text() == edited, 30.0, what="the file written",
                         interval=0.1, pause=pilot.pause)
        await wait_until(lambda: not isinstance(app.screen, ConfigEditorScreen), 30.0,
                         what="the editor to close", interval=0.1, pause=pilot.pause)
    assert of(seen, EditProject) == [EditProject()]
    saves = of(seen, SaveProject)
    assert len(saves) == 1 and isinstance(saves[0], SaveProject)
    assert saves[0].text == edited and "+backlog = 512" in saves[0].diff


async def test_the_export_dialog_posts_the_export(shop_dir: Path, tmp_path: Path) -> None:
    app, engine = started(shop_dir)
    seen, hook = recorded()
    target = tmp_path / "out.jsonl"
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        await pilot.press("x")
        await wait_until(lambda: isinstance(app.screen, ExportDialog), 30.0, what="the dialog",
                         interval=0.1, pause=pilot.pause)
        app.screen.query_one("#export-path").value = str(target)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(target.exists, 30.0, what="the export file", interval=0.1,
                         pause=pilot.pause)
    assert of(seen, ChooseExport) == [ChooseExport()]
    assert of(seen, ExportRequests) == [ExportRequests(target, "jsonl")]
    assert len(target.read_text().splitlines()) == len(engine.request_log)


async def test_palette_entries_post_the_same_intents_as_the_keys(shop_dir: Path) -> None:
    app, engine = started(shop_dir)
    seen, hook = recorded()
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        commands = {cmd.title: cmd for cmd in app.palette_commands()}
        commands["Restart web"].run()
        commands["Switch backend to hypercorn"].run()
        await wait_until(lambda: len(engine.calls) == 2, 30.0, what="both commands", interval=0.1,
                         pause=pilot.pause)
    assert of(seen, RestartApp) == [RestartApp("web")]
    assert of(seen, SwitchBackend) == [SwitchBackend("hypercorn")]
    assert sorted(engine.calls) == [("backend", "hypercorn"), ("restart", "web")]


def test_screens_and_widgets_never_touch_the_engine() -> None:
    # Only the app talks to the engine; screens and widgets get data handed down and post
    # intents up. Any `.engine` or `.workbench` attribute in them is a way around that.
    offenders = []
    for folder in ("screens", "widgets"):
        for path in sorted((ROOT / "workbench" / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in ("engine", "workbench"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert offenders == []
