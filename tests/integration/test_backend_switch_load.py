"""Switching the serving backend while clients keep sending requests (SPEC §5).

The engine runs in this test's event loop (as the workbench runs it), with a routing
`return` location and one orchestrated app; clients on keep-alive and on fresh connections
loop through the switches granian -> uvicorn -> hypercorn -> granian.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import ASGI_APP, ProcessTracker, Project, comments

from gateway.engine import Engine
from gateway.events import AppStateChanged

API_APP = {**ASGI_APP, "name": "api", "path": "/api"}


class ClientLoop:
    """`clients` tasks sending GETs round the `paths` until stopped (or `limit` each),
    counting every outcome; `fresh` of them open a new connection per request."""

    def __init__(self, url: str, paths: list[str], *, clients: int = 2, fresh: int = 1,
                 limit: int = 50_000) -> None:
        self.url = url
        self.paths = paths
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        #: Successes per kind of connection ("fresh" or "keep-alive").
        self.served: Counter[str] = Counter()
        self._plan = [False] * clients + [True] * fresh
        self._limit = limit
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ok(self) -> int:
        return self.outcomes["200"]

    async def _run(self, fresh: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=0 if fresh else 1)
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=30,
                                     limits=limits) as http:
            for i in range(self._limit):
                if self._stop.is_set():
                    return
                path = self.paths[i % len(self.paths)]
                try:
                    r = await http.get(path)
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                self.outcomes[str(r.status_code)] += 1
                if r.status_code == 200:
                    self.served["fresh" if fresh else "keep-alive"] += 1
                else:
                    self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")

    async def until(self, count: int, timeout: float = 60.0) -> None:
        """Wait for `count` more successful requests from now."""
        target = self.ok + count
        async with asyncio.timeout(timeout):
            while self.ok < target:  # noqa: ASYNC110 - counters, nothing to await on
                await asyncio.sleep(0.01)

    async def __aenter__(self) -> ClientLoop:
        self._tasks = [asyncio.create_task(self._run(fresh)) for fresh in self._plan]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


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
        for backend in ("uvicorn", "hypercorn", "granian"):
            await engine.switch_backend(backend)
            assert engine.backend == backend
            assert (api.state, api.backend) == ("healthy", backend)
            assert api.pid not in pids  # rolled over to a new process
            pids.append(api.pid)
            await load.until(50)  # traffic flows on the new backend

    assert load.failures == [], (load.outcomes, load.failures[:5])
    assert load.ok >= 200
    assert load.served["fresh"] >= 20 and load.served["keep-alive"] >= 20, load.served
    metrics = engine.metrics()
    assert metrics["gateway"]["backend"] == "granian"
    assert metrics["apps"]["api"]["restarts"] == 0  # rollovers are not restarts
    after = project.config.read_text()
    assert after == before  # back to granian: the very text the user wrote
    assert comments(after) == comments(before)
    assert 'backend = "granian"  # switched live by the tests' in after
