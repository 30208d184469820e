"""Start-up failures: the app exits with 2 (project file) or 1 (anything else), says why once,
and leaves no process behind."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gateway.engine import Engine
from tests.support.harness import assert_nothing_left, free_port, free_port_range, wait_until
from tests.support.wb import real_project_text
from workbench.app import create_app
from workbench.runner import run as run_workbench


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def _run_until_exit(config: Path) -> tuple[int | None, str | None]:
    engine = Engine(config)
    app = create_app(engine)
    try:
        async with app.run_test() as pilot:
            await wait_until(lambda: app.phase == "failed", 30, what="the start to fail",
                             interval=0.1, pause=pilot.pause)
    finally:
        await engine.stop()
    await assert_nothing_left(set(), children=True, timeout=15.0)
    return app.return_code, app.startup_error


async def test_a_config_error_at_start_exits_2_with_the_message(tmp_path: Path) -> None:
    config = write(tmp_path / "workbench.toml", '[server]\nport = "eight"\n')
    code, message = await _run_until_exit(config)
    assert code == 2
    assert message is not None and "workbench.toml:2:" in message and "server.port" in message


async def test_a_busy_gateway_port_exits_1(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        config = write(tmp_path / "workbench.toml",
                       real_project_text(port, free_port_range(), apps=("api",)))
        code, message = await _run_until_exit(config)
    assert code == 1
    assert message


def test_run_workbench_returns_2_before_any_terminal_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "workbench.toml", "[server\n")
    assert run_workbench(config, {}) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyserve-tui: ") and "workbench.toml" in err
    assert len(err.strip().splitlines()) == 1


def test_run_workbench_missing_file_exits_2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = run_workbench(tmp_path / "nope.toml", {})
    assert code == 2
    assert "nope.toml" in capsys.readouterr().err


async def test_a_healthy_start_then_stop_leaves_nothing(real_project: Path) -> None:
    engine = Engine(real_project)
    app = create_app(engine, poll_interval=0.2)
    async with app.run_test() as pilot:
        await wait_until(lambda: app.phase == "running", 60, what="the engine to start",
                         interval=0.1, pause=pilot.pause)
        await wait_until(lambda: bool(app.metrics and app.metrics.apps), 30, what="metrics",
                         interval=0.1, pause=pilot.pause)
        app.request_quit()
        app.request_quit()  # idempotent
        await wait_until(lambda: app.phase == "stopped", 60, what="the engine to stop",
                         interval=0.1, pause=pilot.pause)
    assert app.return_code == 0
    await asyncio.sleep(0)
    await assert_nothing_left(set(), children=True, timeout=15.0)
