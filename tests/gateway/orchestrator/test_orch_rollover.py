"""Blue/green rollovers: backend switch and code reload under a steady stream of requests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.events import EngineMessage
from gateway.orchestrator import AppState
from tests.support.harness import group_members, wait_until
from tests.support.orch_gateway import ServedGateway, serve_gateway
from tests.support.orchestration import Recorder, project_toml


class RequestLoop:
    """Keeps a few clients sending requests through the gateway, counting every outcome."""

    def __init__(self, url: str, path: str, clients: int = 3) -> None:
        self.url = url
        self.path = path
        self.clients = clients
        self.outcomes: Counter[str] = Counter()
        self.bodies: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=15) as http:
            while not self._stop.is_set():
                try:
                    r = await http.get(self.path)
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    continue
                self.outcomes[str(r.status_code)] += 1
                if r.status_code == 200:
                    self.bodies.append(r.text)
                else:
                    self.bodies.append(f"{r.status_code}: {r.text}")

    async def __aenter__(self) -> RequestLoop:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def failures(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != "200"}


async def pid_serving(gw: ServedGateway, path: str) -> str:
    async with httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=10) as http:
        return (await http.get(path)).text


@pytest.mark.slow
async def test_switch_backend_rolls_over_without_failing_a_request(
        tmp_path: Path, recorder: Recorder) -> None:
    text = project_toml([
        {"name": "api"},
        {"name": "pinned", "backend": "granian"},
    ], server={"backend": "granian"})
    async with serve_gateway(tmp_path, text, recorder) as gw:
        orch = gw.orchestrator
        api, pinned = orch.get("api"), orch.get("pinned")
        assert await api.wait_ready(15) and await pinned.wait_ready(15)
        assert api.backend == "granian"
        old_pid, pinned_pid = api.pid, pinned.pid
        recorder.pids.add(old_pid)
        async with RequestLoop(gw.url, "/api/echo") as loop:
            await wait_until(lambda: loop.outcomes["200"] >= 20, what="traffic before")
            rolled = await orch.switch_backend("uvicorn")
            seen = loop.outcomes["200"]
            await wait_until(lambda: loop.outcomes["200"] >= seen + 20, what="traffic after")
            # The old process is drained and stopped while requests keep flowing.
            await wait_until(lambda: not _alive(old_pid), what="old process to stop")
            seen = loop.outcomes["200"]
            await wait_until(lambda: loop.outcomes["200"] >= seen + 10, what="more traffic")
        assert rolled == ["api"]
        assert loop.failures == {}, loop.bodies[-5:]
        assert api.backend == "uvicorn" and api.pid != old_pid and api.state is AppState.HEALTHY
        assert pinned.pid == pinned_pid and pinned.backend == "granian"
        assert orch.default_backend == "uvicorn"
        assert api.restarts == 0  # a planned rollover is not a restart
        reasons = [e.reason for e in recorder.events
                   if getattr(e, "app", "") == "api" and getattr(e, "new", "") == "healthy"]
        assert any("backend switched to uvicorn" in r for r in reasons)
        assert await orch.switch_backend("uvicorn") == []  # nothing left to roll


def _alive(pid: int) -> bool:

    return bool(group_members({pid}))


HOT_APP = '''
VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"][len(scope.get("root_path", "")):]  # the route, under any prefix
    body = b"ok" if path == "/health" else b"version %d" % VERSION
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
'''


@pytest.mark.slow
async def test_code_change_reloads_without_failing_a_request(tmp_path: Path,
                                                             recorder: Recorder) -> None:
    hot = tmp_path / "hot"
    hot.mkdir()
    (hot / "hotapp.py").write_text(HOT_APP.format(version=1))
    text = project_toml([{"name": "hot", "app_path": "hotapp:app", "module_path": "hot",
                          "reload": True}])
    async with serve_gateway(tmp_path, text, recorder) as gw:
        sup = gw.orchestrator.get("hot")
        assert await sup.wait_ready(15)
        assert await pid_serving(gw, "/hot/") == "version 1"
        old_pid = sup.pid
        recorder.pids.add(old_pid)
        async with RequestLoop(gw.url, "/hot/") as loop:
            await wait_until(lambda: loop.outcomes["200"] >= 10, what="traffic before")
            (hot / "hotapp.py").write_text(HOT_APP.format(version=2))
            await wait_until(lambda: loop.bodies and loop.bodies[-1] == "version 2", 20,
                             what="the new code to serve")
            (hot / "notes.txt").write_text("not python: ignored")
            seen = loop.outcomes["200"]
            await wait_until(lambda: loop.outcomes["200"] >= seen + 10, what="more traffic")
        assert loop.failures == {}, loop.bodies[-5:]
        assert sup.pid != old_pid and sup.restarts == 0
        messages = [e.text for e in recorder.of(EngineMessage) if e.app == "hot"]
        assert any("hotapp.py changed" in m for m in messages)
        assert not any("notes.txt" in m for m in messages)


async def test_watch_globs_trigger_a_rollover(tmp_path: Path, recorder: Recorder) -> None:
    (tmp_path / "conf").mkdir()
    text = project_toml([{"name": "api", "watch": ["conf/*.toml"]}])
    async with serve_gateway(tmp_path, text, recorder) as gw:
        sup = gw.orchestrator.get("api")
        assert await sup.wait_ready(15)
        old_pid = sup.pid
        recorder.pids.add(old_pid)
        (tmp_path / "conf" / "other.txt").write_text("ignored")
        (tmp_path / "conf" / "app.toml").write_text("x = 1")
        await wait_until(lambda: sup.pid not in (None, old_pid) and
                         sup.state is AppState.HEALTHY, 20, what="rollover after the change")
        messages = [e.text for e in recorder.of(EngineMessage) if e.app == "api"]
        assert any("app.toml changed" in m for m in messages)
        assert not any("other.txt" in m for m in messages)


async def test_failed_rollover_keeps_the_old_process(tmp_path: Path,
                                                     recorder: Recorder) -> None:
    async with serve_gateway(tmp_path, project_toml([{"name": "api"}]), recorder) as gw:
        orch = gw.orchestrator
        sup = orch.get("api")
        assert await sup.wait_ready(15)
        pid = sup.pid
        broken = dataclasses.replace(orch.options.apps[0], app_path="tests.apps.broken:app")
        options = dataclasses.replace(orch.options, apps=[broken])
        plan = await orch.apply(options, orch.project)
        assert (plan.added, plan.removed, plan.roll) == ((), (), ("api",))
        assert sup.pid == pid and sup.state is AppState.HEALTHY
        assert "this_module_does_not_exist_anywhere" in sup.last_error
        assert sup.pending == "configuration changed"
        warnings = [e.text for e in recorder.of(EngineMessage) if e.level == "warning"]
        assert any("old one keeps serving" in w and "cannot import" in w for w in warnings)
        assert (await pid_serving(gw, "/api/pid")).isdigit()
