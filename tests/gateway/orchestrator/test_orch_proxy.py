"""Requests through a real gateway to real app processes (process_orchestration extension)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.orchestrator import AppState
from tests.support.harness import TESTS_DIR, RawResponse, free_port, read_response, wait_until
from tests.support.orch_gateway import serve_gateway
from tests.support.orchestration import Recorder, project_toml


def client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, trust_env=False, timeout=15)


async def test_strip_path_proxying_for_every_kind_of_app(tmp_path: Path,
                                                         recorder: Recorder) -> None:
    text = project_toml([
        {"name": "api"},
        {"name": "keep", "strip_path": False},
        {"name": "wsgi", "app_path": "tests.apps.wsgi_app:app"},  # detected as WSGI
        {"name": "fac", "app_path": "tests.apps.factory:create_app", "factory": True,
         "factory_args": {"greeting": "hey", "times": 2}},
        {"name": "env", "env": {"GREETING": "bonjour"}},
        {"name": "cmd", "command": [sys.executable, str(TESTS_DIR / "apps/command_server.py")]},
    ])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        for sup in gw.orchestrator.supervisors.values():
            assert await sup.wait_ready(15), sup

        r = await http.get("/api/echo/x%20y?q=1", headers={"x-request-id": "req-api-1"})
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "req-api-1"
        body = r.json()
        assert body["path"] == "/echo/x y" and body["query"] == "q=1"
        # Told its prefix as behind `uvicorn --root-path /api`: path includes root_path.
        assert (body["root_path"], body["scope_path"]) == ("/api", "/api/echo/x y")
        assert body["headers"]["x-request-id"] == "req-api-1"
        assert body["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert body["headers"]["x-forwarded-prefix"] == "/api"
        # The reported pid leads the app's process group; the serving worker is below it.
        tree = psutil.Process(gw.orchestrator.get("api").pid).children(recursive=True)
        assert body["pid"] in {p.pid for p in tree}

        assert (await http.get("/api")).json()["path"] == "/"
        # A Location naming the app's private address is made relative (never a link to it).
        r = await http.get("/api/self-redirect")
        assert r.status_code == 302 and r.headers["location"] == "/api/echo"
        body = (await http.get("/keep/echo")).json()
        assert (body["path"], body["root_path"]) == ("/keep/echo", "")
        assert "x-forwarded-prefix" not in body["headers"]

        r = await http.post("/wsgi/echo?a=b", content=b"payload")
        assert r.json() | {"pid": 0} == {"kind": "wsgi", "path": "/echo", "script_name": "/wsgi",
                                        "query": "a=b", "method": "POST", "body": "payload",
                                        "pid": 0}

        r = await http.get("/fac/hello")
        assert r.json() == {"greeting": "heyhey", "path": "/hello", "root_path": "/fac"}

        r = await http.get("/env/env?name=GREETING")
        assert r.json() == {"value": "bonjour"}
        r = await http.get("/env/env?name=PYSERVE_TUI_PREFIX")
        assert r.json() == {"value": "/env"}

        r = await http.get("/cmd/hello?x=1")
        assert r.json()["kind"] == "command" and r.json()["path"] == "/hello?x=1"
        assert r.json()["cwd"] == str(tmp_path)  # pytest's tmp_path is already resolved
        assert r.json()["prefix"] == "/cmd" and r.json()["uvicorn_root_path"] == "/cmd"

        r = await http.get("/nowhere")
        assert r.status_code == 404

        # The app's own log lines carry the request id the gateway used.
        await http.get("/api/log", headers={"x-request-id": "trace-me-7"})
        lines = await wait_until(lambda: [ln for ln in gw.orchestrator.logs("api")
                                          if ln.request_id == "trace-me-7"], what="app lines")
        assert {ln.line for ln in lines} >= {"printed inside a request"}

        metrics = (await http.get("/metrics")).json()
        assert metrics["apps"]["api"]["state"] == "healthy"
        assert metrics["apps"]["api"]["requests"] >= 3
        assert metrics["apps"]["cmd"]["backend"] == "command"
        assert metrics["extensions"]["process_orchestration"]["proxied"] >= 8


async def test_sse_events_arrive_as_sent(tmp_path: Path, recorder: Recorder) -> None:
    async with serve_gateway(tmp_path, project_toml([{"name": "api"}]), recorder) as gw:
        assert await gw.orchestrator.get("api").wait_ready(15)
        async with client(gw.url) as http:
            started = time.monotonic()
            async with http.stream("GET", "/api/sse?n=3&gap=0.6") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                chunks = r.aiter_text()
                first = await anext(chunks)
                first_at = time.monotonic() - started
                assert "event 0" in first
                rest = "".join([c async for c in chunks])
            total = time.monotonic() - started
        assert "event 2" in rest and "event 0" not in rest
        assert total >= 1.2
        assert first_at < total - 0.8  # the first event came long before the end


async def test_websocket_echo_through_the_gateway(tmp_path: Path, recorder: Recorder) -> None:
    async with serve_gateway(tmp_path, project_toml([{"name": "ws"}]), recorder) as gw:
        assert await gw.orchestrator.get("ws").wait_ready(15)
        url = gw.url.replace("http://", "ws://") + "/ws/ws"
        async with connect(url, open_timeout=10) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "echo: hello"
            await ws.send(b"\x00\x01")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01"


async def test_stopped_and_failed_apps_answer_503_at_once(tmp_path: Path,
                                                          recorder: Recorder) -> None:
    text = project_toml([
        {"name": "api"},
        {"name": "broken", "app_path": "tests.apps.broken:app", "max_restart_count": 0},
    ])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        orch = gw.orchestrator
        assert await orch.get("api").wait_ready(15)
        await wait_until(lambda: orch.get("broken").state is AppState.FAILED, what="failed")
        await orch.stop_app("api")
        for path, state in (("/api/x", "stopped"), ("/broken/x", "failed")):
            started = time.monotonic()
            r = await http.get(path, headers={"x-request-id": "rid-503"})
            assert time.monotonic() - started < 1.0
            assert r.status_code == 503
            name = path.split("/")[1]
            assert f"app {name!r}" in r.text and state in r.text and "rid-503" in r.text
            assert "retry-after" not in r.headers
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.url.replace("http://", "ws://") + "/api/ws"):
                pass
        assert refused.value.response.status_code == 503
        assert b"app 'api'" in refused.value.response.body


async def test_request_during_restart_is_held_then_served(tmp_path: Path,
                                                          recorder: Recorder) -> None:
    # A fixed port is the restart that stops the old process first (two cannot share it).
    text = project_toml([{"name": "api", "hold_requests": 10.0, "port": free_port()}])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        sup = gw.orchestrator.get("api")
        assert await sup.wait_ready(15)
        old_pid = sup.pid
        restart = asyncio.create_task(gw.orchestrator.restart_app("api"))
        await wait_until(lambda: sup.state is not AppState.HEALTHY, what="restart to begin")
        r = await http.get("/api/pid")
        assert r.status_code == 200
        assert int(r.text) != old_pid
        await restart
        assert gw.app.pipeline.metrics()["process_orchestration"]["held"] >= 1


async def test_hold_gives_up_with_503_and_retry_after(tmp_path: Path,
                                                      recorder: Recorder) -> None:
    # A crash-looping app with a long backoff stays "restarting" for a while.
    text = project_toml([{"name": "loop", "app_path": "tests.apps.broken:app",
                          "restart_delay": 20.0, "hold_requests": 0.4}])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        sup = gw.orchestrator.get("loop")
        await wait_until(lambda: sup.state is AppState.RESTARTING, what="restarting")
        started = time.monotonic()
        r = await http.get("/loop/x")
        waited = time.monotonic() - started
        assert r.status_code == 503 and 0.35 <= waited < 3.0
        assert r.headers["retry-after"] == "1"
        assert "app 'loop'" in r.text and "restarting" in r.text


async def test_crash_mid_request_is_502_then_recovers(tmp_path: Path,
                                                      recorder: Recorder) -> None:
    async with serve_gateway(tmp_path, project_toml([{"name": "api"}]), recorder) as gw, \
            client(gw.url) as http:
        sup = gw.orchestrator.get("api")
        assert await sup.wait_ready(15)
        r = await http.post("/api/crash", content=b"x")
        assert r.status_code == 502
        assert "app 'api'" in r.text
        await wait_until(lambda: sup.restarts == 1 and sup.state is AppState.HEALTHY,
                         what="restart after the crash")
        assert (await http.get("/api/echo")).status_code == 200


async def test_slow_app_times_out_with_504(tmp_path: Path, recorder: Recorder) -> None:
    text = project_toml([{"name": "api", "proxy_timeout": 0.5}])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        assert await gw.orchestrator.get("api").wait_ready(15)
        r = await http.get("/api/slow?s=3")
        assert r.status_code == 504 and "app 'api'" in r.text
        assert (await http.get("/api/slow?s=0.05")).text == "slow done"


async def test_extension_owns_an_orchestrator_when_the_engine_gave_none(
        tmp_path: Path, recorder: Recorder) -> None:
    from tests.support import harness

    text = project_toml([{"name": "api"}], server={"backend": "uvicorn"})
    async with harness.serve_config(text, tmp_path) as gw, client(gw.url) as http:
        orch = gw.services.orchestrator
        assert orch is not None
        assert await orch.get("api").wait_ready(15)
        recorder.pids.add(orch.get("api").pid)
        r = await http.get("/api/echo")
        assert r.status_code == 200 and json.loads(r.text)["path"] == "/echo"
        assert orch.snapshot()[0]["backend"] == "uvicorn"
    assert gw.services.orchestrator is None  # stopped and released with the pipeline


async def test_a_request_refused_by_a_dying_app_is_held_for_its_restart(
        tmp_path: Path, recorder: Recorder) -> None:
    """The app's port refuses connections a moment before its process is gone (the exit is
    noticed only then): a GET arriving in between is held for the restart and answered by
    the new process, as for any restarting app, instead of getting 502."""
    text = project_toml([
        {"name": "cmd", "command": [sys.executable, str(TESTS_DIR / "apps/command_server.py")]},
    ])
    async with serve_gateway(tmp_path, text, recorder) as gw, client(gw.url) as http:
        sup = gw.orchestrator.get("cmd")
        assert await sup.wait_ready(15)
        first = (await http.get("/cmd/who")).json()["pid"]
        assert (await http.get("/cmd/close-and-exit")).status_code == 200
        r = await http.get("/cmd/after", headers={"x-request-id": "held-1"})
        assert r.status_code == 200, r.text
        assert r.json()["pid"] != first  # the restarted process answered
        (orchestration,) = gw.app.pipeline.members
        assert orchestration.metrics()["retried"] == 1  # type: ignore[index]
        # A request with a body is not resent: it gets the 502 naming the app.
        assert (await http.get("/cmd/who")).status_code == 200
        assert (await http.get("/cmd/close-and-exit")).status_code == 200
        r = await http.post("/cmd/post", content=b"x")
        assert r.status_code == 502 and "'cmd'" in r.text and r.headers["x-request-id"] in r.text
        # A bodyless DELETE is idempotent (RFC 9110): it goes again like the GET. The new
        # process answers (501: it knows no DELETE), not the gateway's 502.
        assert (await http.get("/cmd/who")).status_code == 200
        retried = orchestration.metrics()["retried"]  # type: ignore[index]
        assert (await http.get("/cmd/close-and-exit")).status_code == 200
        r = await http.delete("/cmd/item")
        assert r.status_code == 501, r.text
        assert orchestration.metrics()["retried"] == retried + 1  # type: ignore[index]


async def test_apps_see_the_normalised_path_as_nginx_locations_do(tmp_path: Path,
                                                                  recorder: Recorder) -> None:
    # App prefixes are matched on the path nginx would match (`$uri`): `//api/x` and
    # `/api/./x` are the app's `/x`, `/api/../x` is not the app's at all, and what cannot be
    # normalised is 400 before any app sees it. Raw request lines: a client library would
    # clean the path up before sending it.
    text = project_toml([{"name": "api"}, {"name": "keep", "strip_path": False}])
    async with serve_gateway(tmp_path, text, recorder) as gw:
        for sup in gw.orchestrator.supervisors.values():
            assert await sup.wait_ready(15), sup
        host, port = gw.url.removeprefix("http://").split(":")

        async def get(target: str) -> RawResponse:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                             .encode())
                response = await read_response(reader)
                assert response is not None, target
                return response
            finally:
                writer.close()

        for target in ("//api/echo/x", "/api/./echo/x", "/api/z/../echo/x", "/%61pi/echo/x"):
            r = await get(target)
            assert r.status == 200, target
            body = json.loads(r.body)
            assert (body["path"], body["root_path"]) == ("/echo/x", "/api"), target
        r = await get("/api/../echo/x")  # normalised to /echo/x: no app has that prefix
        assert r.status == 404
        for target in ("/api/%00", "/api/x%zz", "/../api/echo"):
            r = await get(target)
            assert r.status == 400, target
            assert b"the request" in r.body.lower() or b"path" in r.body, r.body
        # Without strip_path the app gets the target as sent, as proxy_pass without a URI.
        r = await get("//keep/echo")
        assert r.status == 200 and json.loads(r.body)["path"] == "//keep/echo"
        # The gateway's own endpoints are found by the normalised path too.
        assert (await get("//health")).status == 200
        # The request log keeps what the client asked for; the trace, what it meant.
        record = next(r for r in gw.services.request_log.snapshot() if r.path == "//api/echo/x")
        assert dict(record.notes)["uri"] == "/api/echo/x" and record.app == "api"
