"""Switching the serving backend while clients keep sending requests (SPEC §5).

The engine runs in this test's event loop (as the workbench runs it), with a routing
`return` location and one orchestrated app; clients on keep-alive and on fresh connections
loop through the switches granian -> builtin -> uvicorn -> hypercorn -> granian.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.engine import Engine
from gateway.events import AppStateChanged
from tests.support.integration import ASGI_APP, ClientLoop, ProcessTracker, Project, comments

API_APP = {**ASGI_APP, "name": "api", "path": "/api"}


@pytest.fixture
async def engine(project: Project) -> AsyncIterator[Engine]:
    project.write(apps=[API_APP], routes={"=/ping": {"return": "200 pong"}})
    tracker = ProcessTracker()
    eng = Engine(project.config, environ={})

    def record(event: object) -> None:
        if isinstance(event, AppStateChanged):
            tracker.add(event.pid, group=True)

    eng.events.subscribe(record)
    try:
        await eng.start()
        yield eng
    finally:
        await eng.stop()
        await asyncio.to_thread(tracker.check)


async def test_switching_backends_under_load_fails_no_request(engine: Engine,
                                                              project: Project) -> None:
    before = project.config.read_text()
    api = engine.orchestrator.get("api")
    assert await api.wait_ready(30), api
    assert engine.backend == "granian"
    host, port = engine.address
    pids = [api.pid]

    async with ClientLoop(f"http://{host}:{port}", ["/ping", "/api/echo"]) as load:
        await load.until(50)
        # The built-in front serves only the gateway: the app stays on granian then.
        for backend, app_backend in (("builtin", "granian"), ("uvicorn", "uvicorn"),
                                     ("hypercorn", "hypercorn"), ("granian", "granian")):
            rolled = api.backend != app_backend
            await engine.switch_backend(backend)
            assert engine.backend == backend
            assert (api.state, api.backend) == ("healthy", app_backend)
            assert (api.pid not in pids) == rolled  # rolled over to a new process, or kept
            pids.append(api.pid)
            await load.until(50)  # traffic flows on the new backend

    assert load.failures == [], (load.outcomes, load.failures[:5])
    assert load.ok >= 200
    assert load.served["fresh"] >= 20 and load.served["keep-alive"] >= 20, load.served
    metrics = engine.metrics()
    assert metrics.gateway.backend == "granian"
    assert metrics.apps["api"].restarts == 0  # rollovers are not restarts
    after = project.config.read_text()
    assert after == before  # back to granian: the very text the user wrote
    assert comments(after) == comments(before)
    assert 'backend = "granian"  # switched live by the tests' in after
