"""Corrupt and half-written project files during live edits, while clients keep asking.

An in-process Engine watches its project file; the test rewrites it in place, the way
editors and scripts do, in every broken way it can: cut inside a string, saved half and
finished later, emptied for a while, with bytes that are not UTF-8; and switches the
backend while the file on disk is broken. The rules (SPEC §2, §4): a broken file is
refused and the running configuration kept (its routes answer, its app keeps its process);
a good one is applied; the workbench never rewrites or loses what the user wrote; no
request fails meanwhile; nothing is left running at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from gateway.engine import Engine
from gateway.events import (
    AppStateChanged,
    BackendChanged,
    ConfigRejected,
    ConfigReloaded,
    EngineMessage,
)
from tests.support.chaos import (
    CHAOS_SECONDS,
    LoadClient,
    LoadStats,
    answer_problem,
    exchange,
    project_text,
    report,
    request_bytes,
)
from tests.support.harness import wait_until

pytestmark = pytest.mark.chaos

APPLY_TIMEOUT = 15.0
_STRING_RE = re.compile(r'"[^"\n]{2,}"')


class LiveProject:
    """The project file, a running Engine on it, and what the engine said."""

    def __init__(self, folder: Path, backend: str) -> None:
        self.path = folder / "workbench.toml"
        self.template = project_text(backend=backend, apps=[{"name": "api"}], extensions=[
            {"type": "routing", "config": {"regex_locations": {"=/ping": {"return": "200 v0"}}}}])
        self.version = 0
        self.path.write_text(self.template, encoding="utf-8")
        self.engine = Engine(self.path, control=False)
        self.events: list[Any] = []
        self.pids: set[int] = set()
        self.engine.events.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, AppStateChanged) and event.pid:
            self.pids.add(event.pid)
        if isinstance(event, ConfigRejected | ConfigReloaded | EngineMessage | BackendChanged):
            self.events.append(event)

    def text(self, version: int, backend: str | None = None) -> str:
        text = self.template.replace('"200 v0"', f'"200 v{version}"')
        if backend is not None:
            text = re.sub(r'backend = "\w+"', f'backend = "{backend}"', text, count=1)
        return text

    def write(self, data: bytes) -> None:
        """Save in place: truncate, write (what most editors and scripts do)."""
        with self.path.open("wb") as fh:
            fh.write(data)

    async def next_event(self, kind: type | tuple[type, ...], since: int,
                         match: Callable[[Any], bool] = lambda e: True) -> Any:
        def found() -> Any:
            return next((e for e in self.events[since:] if isinstance(e, kind) and match(e)),
                        None)

        return await wait_until(found, APPLY_TIMEOUT, what=f"{kind} from the engine")

    @property
    def port(self) -> int:
        return self.engine.address[1]

    def app_pid(self) -> int | None:
        return self.engine.orchestrator.get("api").pid


def broken_prefix(text: str, rng: random.Random, not_like: bytes) -> int:
    """A cut position strictly inside a quoted string (the prefix is never valid TOML)
    whose prefix differs from `not_like` (the watcher only reacts to a change)."""
    spans = [m.span() for m in _STRING_RE.finditer(text)]
    for _ in range(100):
        start, end = rng.choice(spans)
        cut = rng.randrange(start + 1, end - 1)
        if text[:cut].encode() != not_like:
            return cut
    raise AssertionError("no new way to cut the file")


async def serve_routes(project: LiveProject, stop: asyncio.Event, stats: LoadStats,
                       versions: set[str]) -> None:
    """Keep asking /ping and the app; every answer must be 200 with a known /ping text."""
    loop = asyncio.get_running_loop()
    client = LoadClient(project.port)
    i = 0
    try:
        while not stop.is_set():
            for path in ("/ping", "/api/echo"):
                i += 1
                rid = f"edit-{i}"
                started = loop.time()
                try:
                    response = await client.request("GET", path, rid=rid, timeout=15.0)
                except Exception as exc:  # a timeout or a cut connection: all failures
                    stats.add("error", loop.time() - started, f"{path}: {exc!r}")
                    continue
                problem = answer_problem(response, rid, frozenset({200}))
                if problem is None and path == "/ping":
                    versions.add(response.body.decode())
                stats.add(str(response.status), loop.time() - started,
                          None if problem is None else f"{path}: {problem}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.01):
                    await stop.wait()
    finally:
        client.close()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveProject]:
    project = LiveProject(tmp_path, "granian")
    try:
        await project.engine.start()
        assert await project.engine.orchestrator.get("api").wait_ready(60)
        yield project
    finally:
        await project.engine.stop()
        left = await asyncio.to_thread(_group_members, project.pids)
        for proc in left:  # never leave anything, even when the test failed
            with contextlib.suppress(psutil.Error):
                proc.kill()
        assert not left, [p.pid for p in left]


def _group_members(pgids: set[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) in pgids:
                found.append(proc)
    return found


async def test_broken_live_edits_are_refused_and_never_lost(live: LiveProject) -> None:
    rng = random.Random()
    stats = LoadStats()
    versions: set[str] = set()
    stop = asyncio.Event()
    load = asyncio.create_task(serve_routes(live, stop, stats, versions))
    pid = live.app_pid()
    done: list[str] = []

    async def current_route_is(version: int) -> None:
        async def served() -> bool:
            out = await exchange(live.port, request_bytes("GET", "/ping", close=True))
            return out.response is not None and out.response.body == f"v{version}".encode()

        await wait_until(served, APPLY_TIMEOUT, what=f"/ping to answer v{version}")

    async def refused(data: bytes, since: int) -> None:
        await live.next_event(ConfigRejected, since)
        await current_route_is(live.version)  # the running configuration stays
        assert live.path.read_bytes() == data  # and the file is as the user left it

    try:
        steps = max(6, int(CHAOS_SECONDS * 2))
        for _ in range(steps):
            kind = rng.choice(["valid", "cut", "half", "not-utf8", "emptied"])
            done.append(kind)
            mark = len(live.events)
            if kind == "valid":
                live.version += 1
                live.write(live.text(live.version).encode())
                await current_route_is(live.version)
            elif kind == "cut":
                text = live.text(live.version + 1)
                data = text[:broken_prefix(text, rng, live.path.read_bytes())].encode()
                live.write(data)
                await refused(data, mark)
            elif kind == "not-utf8":
                raw = live.text(live.version + 1).encode()
                at = rng.randrange(len(raw))
                data = raw[:at] + b"\xff\xfe" + raw[at:] + b"#%d" % len(done)  # each new
                live.write(data)
                await refused(data, mark)
            elif kind == "half":
                # Saved in two writes with a pause: the first half is seen, refused, and the
                # whole file applies once the second lands.
                live.version += 1
                text = live.text(live.version)
                cut = broken_prefix(text, rng, live.path.read_bytes())
                with live.path.open("wb") as fh:
                    fh.write(text[:cut].encode())
                    fh.flush()
                    await live.next_event(ConfigRejected, mark)
                    await current_route_is(live.version - 1)
                    fh.write(text[cut:].encode())
                await current_route_is(live.version)
            else:  # emptied: truncated, and the content comes later
                live.version += 1
                with live.path.open("wb") as fh:
                    fh.flush()
                    await live.next_event(EngineMessage, mark, lambda e: "empty" in e.text)
                    await current_route_is(live.version - 1)
                    fh.write(live.text(live.version).encode())
                await current_route_is(live.version)
            assert live.app_pid() == pid, f"the app was restarted by {done}"

        # Switch the backend while the file on disk is broken: the switch happens, the
        # file is left exactly as it is, and the engine says why it did not write it.
        text = live.text(live.version + 1)
        broken = text[:broken_prefix(text, rng, live.path.read_bytes())].encode()
        mark = len(live.events)
        live.write(broken)
        await refused(broken, mark)
        mark = len(live.events)
        await live.engine.switch_backend("uvicorn")
        assert live.engine.backend == "uvicorn"
        assert [e for e in live.events[mark:] if isinstance(e, BackendChanged)]
        assert any(isinstance(e, EngineMessage) and "left as it is" in e.text
                   for e in live.events[mark:])
        assert live.path.read_bytes() == broken
        await wait_until(lambda: live.engine.orchestrator.get("api").backend == "uvicorn",
                         APPLY_TIMEOUT, what="the app to roll over to uvicorn")

        # The user finishes the edit (naming the new backend): it applies as saved.
        live.version += 1
        final = live.text(live.version, backend="uvicorn")
        live.write(final.encode())
        await current_route_is(live.version)
        assert live.engine.backend == "uvicorn"
        assert live.path.read_text(encoding="utf-8") == final
    finally:
        stop.set()
        await load

    report("config_live_edits", steps=done, requests=stats.requests,
           by_status=dict(stats.by_status), failures=stats.failures[:10],
           versions_seen=len(versions),
           rejected=sum(isinstance(e, ConfigRejected) for e in live.events),
           applied=sum(isinstance(e, ConfigReloaded) for e in live.events))
    assert not stats.failures, stats.failures[:10]
    assert stats.requests > 20
    assert versions <= {f"v{k}" for k in range(live.version + 1)}, versions
