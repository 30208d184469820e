"""The shared test support (tests/support/harness.py) does what every test relies on it for."""

from __future__ import annotations

import asyncio
import sys
import tomllib

import pytest

from tests.support.harness import (
    ROOT,
    TruncatedBody,
    assert_nothing_left,
    left_running,
    poll,
    project_file,
    read_response,
    wait_until,
)


async def test_wait_until_returns_the_value_or_fails_naming_what() -> None:
    calls = iter([0, None, "done"])
    assert await wait_until(lambda: next(calls), 1.0, interval=0) == "done"
    with pytest.raises(AssertionError, match="waiting for the moon"):
        await wait_until(lambda: False, 0.05, what="the moon")


def test_poll_counts_the_ignored_errors_as_not_yet() -> None:
    calls = iter([KeyError("x"), None, 7])

    def probe() -> int | None:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert poll(probe, 1.0, interval=0, ignore=(KeyError,)) == 7
    with pytest.raises(AssertionError, match="last error: KeyError"):
        poll(lambda: {}["missing"], 0.05, interval=0.01, ignore=(KeyError,))


def test_project_file_fills_in_the_tests_app_defaults() -> None:
    doc = tomllib.loads(project_file(server={"port": 0}, apps=[{"name": "api"},
                                                               {"name": "cmd", "command": ["x"]}],
                                     orchestration={"restart_delay": 0.0}))
    orchestration = doc["extensions"][-1]
    assert orchestration["type"] == "process_orchestration"
    assert orchestration["config"]["restart_delay"] == 0.0
    api, cmd = orchestration["config"]["apps"]
    assert api == {"name": "api", "path": "/api", "module_path": str(ROOT),
                   "app_path": "tests.apps.basic:app"}
    assert "app_path" not in cmd
    assert "process_orchestration" not in project_file(server={})


async def test_read_response_frames_bodies_as_http_says() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                     b"Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                     b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nshort")
    reader.feed_eof()
    first = await read_response(reader)
    assert first is not None and (first.status, first.body) == (200, b"abc")
    assert first.header("x-a") == "1"
    with pytest.raises(TruncatedBody):
        await read_response(reader)


async def test_nothing_left_waits_for_the_processes_then_names_the_ones_left() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c",
                                                "import time; time.sleep(30)")
    try:
        assert [p.pid for p in left_running([proc.pid])] == [proc.pid]
        with pytest.raises(AssertionError, match=f"pid={proc.pid}"):
            await assert_nothing_left([proc.pid], timeout=0.2)
        proc.terminate()
        await assert_nothing_left([proc.pid], timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
