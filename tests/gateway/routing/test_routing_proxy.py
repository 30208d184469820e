"""proxy_pass through the real gateway to a real upstream on 127.0.0.1 (an echo app)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.harness import ServedGateway, free_port, serve_config, wait_until
from tests.support.routing import DEADLINE, echo_upstream, get, raw_http

CONFIG = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"/api/" = { proxy_pass = "http://127.0.0.1:PORT/v1/" }
"^~/raw/" = { proxy_pass = "http://127.0.0.1:PORT" }
"=/exact" = { proxy_pass = "http://127.0.0.1:PORT/target" }
'~^/search/(?P<term>[^/]+)$' = { proxy_pass = "http://127.0.0.1:PORT/find?q={term}" }
"/down/" = { proxy_pass = "http://127.0.0.1:DEAD/" }
"/slow/" = { proxy_pass = "http://127.0.0.1:SILENT/", proxy_timeout = 0.5 }
"/ws/" = { proxy_pass = "http://127.0.0.1:PORT/sock/" }
[extensions.config.regex_locations.'~^/legacy/(?P<rest>.*)$']
proxy_pass = "http://127.0.0.1:PORT/new/{rest}"
headers = ["X-Rest: {rest}"]
"""


@contextlib.asynccontextmanager
async def silent_upstream() -> AsyncIterator[int]:
    """Accepts connections and never answers (for the proxy timeout)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[ServedGateway]:
    async with echo_upstream() as port, silent_upstream() as silent:
        text = (CONFIG.replace("PORT", str(port)).replace("DEAD", str(free_port()))
                .replace("SILENT", str(silent)))
        async with serve_config(text, tmp_path) as served:
            yield served


@pytest.fixture
async def client(gw: ServedGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        yield c


async def test_prefix_is_replaced_by_url_path(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/users/7?full=1", headers={"x-request-id": "req-123"})
    assert r.status_code == 200
    echo = r.json()
    assert echo["target"] == "/v1/users/7?full=1"
    assert echo["headers"]["x-request-id"] == "req-123"
    assert echo["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert r.headers["x-upstream"] == "echo"
    assert r.headers["x-request-id"] == "req-123"


async def test_url_without_path_passes_the_request_path_unchanged(gw: ServedGateway) -> None:
    r = await raw_http(gw.port, get("/raw/a%20b/%7Euser?q=%2F"))
    assert r.status == 200
    assert b'"target": "/raw/a%20b/%7Euser?q=%2F"' in r.body


async def test_exact_location_with_path(client: httpx.AsyncClient) -> None:
    assert (await client.get("/exact?x=1")).json()["target"] == "/target?x=1"


async def test_regex_named_groups_substitute(client: httpx.AsyncClient) -> None:
    r = await client.get("/legacy/a/b c", params={"k": "v"})
    assert r.json()["target"] == "/new/a/b%20c?k=v"
    assert r.headers["x-rest"] == "a/b c"


async def test_url_query_replaces_client_query(client: httpx.AsyncClient) -> None:
    r = await client.get("/search/cats?page=2")
    assert r.json()["target"] == "/find?q=cats"


async def test_request_body_is_forwarded(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/items", content=b"payload" * 1000)
    echo = r.json()
    assert (echo["method"], echo["body"]) == ("POST", "payload" * 1000)


async def test_route_and_upstream_are_recorded(gw: ServedGateway,
                                               client: httpx.AsyncClient) -> None:
    r = await client.get("/api/x")
    rid = r.headers["x-request-id"]
    rec = await wait_until(lambda: gw.services.request_log.find(rid), DEADLINE, interval=0.01)
    assert rec.route == "/api/"
    assert rec.upstream is not None and rec.upstream.startswith("127.0.0.1:")


async def test_unreachable_upstream_is_502(client: httpx.AsyncClient) -> None:
    r = await client.get("/down/x")
    assert r.status_code == 502
    assert "request id" in r.text


async def test_silent_upstream_is_504_after_proxy_timeout(client: httpx.AsyncClient) -> None:
    r = await client.get("/slow/x")
    assert r.status_code == 504


async def test_websocket_is_proxied(gw: ServedGateway) -> None:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws/chat", open_timeout=5) as ws:
        await ws.send("hi")
        async with asyncio.timeout(5):
            assert await ws.recv() == "/sock/chat hi"
