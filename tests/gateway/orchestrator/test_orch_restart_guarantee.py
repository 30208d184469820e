"""A restart never trades a working app for a broken one, and a change whose new process
failed stays pending until it is retried; causes are named, signals reported as signals,
and no control character reaches a log line, a status field or a 503 body."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import psutil

from gateway.orchestrator import AppState
from gateway.orchestrator.orchestrator import Plan
from tests.support.harness import ROOT, wait_until
from tests.support.orch_gateway import serve_gateway
from tests.support.orchestration import Recorder, app, project_toml

GOOD = "from tests.apps.basic import app  # noqa: F401\n"
BROKEN = "import this_module_does_not_exist_anywhere  # noqa: F401\n" + GOOD
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


async def get(sup, path: str) -> httpx.Response:
    host, port = sup.upstream()
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(f"http://{host}:{port}{path}", timeout=5)


async def test_failed_restarts_keep_the_old_process_and_the_change_pending(
        make_orchestrator, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "mod.py"
    module.write_text(GOOD)
    env = {"PYTHONPATH": str(ROOT), "V": "1"}
    orch = make_orchestrator([app("api", app_path="mod:app", module_path=str(code), env=env)])
    await orch.start()
    sup = orch.get("api")
    assert await sup.wait_ready(15)
    pid = sup.pid

    module.write_text(BROKEN)  # `r` / `pyserve-tui restart api` on broken code
    assert await orch.restart_app("api") is False
    assert (sup.state, sup.pid, sup.restarts) == (AppState.HEALTHY, pid, 0)
    assert (await get(sup, "/env?name=V")).json() == {"value": "1"}  # still serving
    assert "No module named 'this_module_does_not_exist_anywhere'" in sup.last_error
    assert orch.snapshot()[0]["pending"] == "restart requested"
    assert orch.plan(orch.options, orch.project).roll == ("api",)  # a reload retries it

    # A config change while the code is broken: refused the same way, and kept.
    changed = dataclasses.replace(orch.options, apps=[
        dataclasses.replace(orch.options.apps[0], env={**env, "V": "2"})])
    plan = await orch.apply(changed, orch.project)
    assert plan.roll == ("api",) and sup.pid == pid
    assert sup.pending == "configuration changed"

    # The same configuration again (a `reload`, a save): the pending change is retried.
    module.write_text(GOOD)
    assert orch.plan(changed, orch.project).roll == ("api",)
    plan = await orch.apply(changed, orch.project)
    assert plan.changed == ("api",) and sup.pid != pid and sup.pending is None
    assert (await get(sup, "/env?name=V")).json() == {"value": "2"}
    assert orch.plan(changed, orch.project) == Plan()  # nothing left to do


async def test_a_sigkilled_app_reports_the_signal(make_orchestrator, recorder: Recorder) -> None:
    orch = make_orchestrator([app("a")])
    await orch.start()
    sup = orch.get("a")
    assert await sup.wait_ready(15)
    server = psutil.Process(sup.pid).children()[0]  # the server, under the app's guard
    os.kill(server.pid, signal.SIGKILL)
    await wait_until(lambda: "restarting" in recorder.states("a"), what="the restart")
    assert sup.last_error == "killed by SIGKILL"
    assert await sup.wait_ready(15)
    assert orch.snapshot()[0]["last_error"] == "killed by SIGKILL"  # kept after recovering


async def test_causes_reach_the_503_body_and_logs_without_control_characters(
        tmp_path: Path, recorder: Recorder) -> None:
    noisy = [sys.executable, "-c",
             "import sys; print('\\x1b[31mred\\x1b[0m text\\x07', flush=True); "
             "print('boom\\x1b]0;retitled\\x07 \\x9b2J\\x08done', file=sys.stderr, flush=True);"
             " sys.exit(3)"]
    text = project_toml([
        {"name": "noisy", "command": noisy, "max_restart_count": 0},
        {"name": "broken", "app_path": "tests.apps.broken:app", "max_restart_count": 0},
    ])
    async with serve_gateway(tmp_path, text, recorder) as gw, \
            httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=10) as http:
        noisy_sup, broken = gw.orchestrator.get("noisy"), gw.orchestrator.get("broken")
        await wait_until(lambda: noisy_sup.state is AppState.FAILED
                         and broken.state is AppState.FAILED, 15, what="both failed")
        assert noisy_sup.last_error == "exited with code 3: boom \\x08done"
        r = await http.get("/noisy/x")
        assert r.status_code == 503
        assert "the app is failed: exited with code 3: boom \\x08done" in r.text
        r = await http.get("/broken/x")
        assert r.status_code == 503
        assert "No module named 'this_module_does_not_exist_anywhere'" in r.text
        lines = [ln.line for ln in gw.orchestrator.logs()]
        assert "red text\\x07" in lines
        assert not [ln for ln in lines if CONTROL.search(ln)]


async def test_sessions_count_to_their_response_head_in_latency(tmp_path: Path,
                                                                recorder: Recorder) -> None:
    from websockets.asyncio.client import connect

    from gateway.builtin import metrics_snapshot

    text = project_toml([{"name": "api"}], extensions=[{"type": "monitoring"}])
    async with serve_gateway(tmp_path, text, recorder) as gw, \
            httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=10) as http:
        assert await gw.orchestrator.get("api").wait_ready(15)
        for _ in range(5):
            assert (await http.get("/api/echo")).status_code == 200
        url = gw.url.replace("http://", "ws://") + "/api/ws"
        async with connect(url, open_timeout=10) as ws:  # open while the stream runs
            await ws.send("hi")
            assert await ws.recv() == "echo: hi"
            async with http.stream("GET", "/api/sse?n=3&gap=0.7") as stream:
                events = [line async for line in stream.aiter_lines() if line]
            assert len(events) == 3
        snap = await wait_until(lambda: (s := metrics_snapshot(gw.app)).apps["api"]
                                .requests >= 7 and s, what="both sessions counted")
        # Each session stayed open for 1.4 s or more; counted in full, p99 would show it.
        api = snap.apps["api"]
        assert api.latency_ms is not None and api.latency_ms.p99 < 1000, api
        assert snap.gateway.latency_ms.p99 < 1000
        routes = snap.extensions["monitoring"]["routes"]
        assert routes and all(r["latency_ms"]["p99"] < 1000 for r in routes), routes
