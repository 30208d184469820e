"""PooledTransport.websocket end to end: websockets client -> uvicorn (ASGI app calling the
transport) -> websockets echo upstream, all on 127.0.0.1 with free ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from gateway.context import RequestContext
from gateway.proxy import PooledTransport, UpstreamTarget
from tests.support.proxy import DEADLINE


@dataclass
class EchoUpstream:
    port: int = 0
    request_headers: Headers | None = None
    path: str = ""
    close_codes: list[int | None] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    state = EchoUpstream()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        state.request_headers = ws.request.headers
        state.path = ws.request.path
        try:
            async for msg in ws:
                if msg == "close-4001":
                    await ws.close(4001, "bye")
                    break
                await ws.send(msg)
        finally:
            rcvd = ws.protocol.close_rcvd
            state.close_codes.append(rcvd.code if rcvd else None)
            state.closed.set()

    def refuse_some(ws: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/forbidden"):
            return ws.respond(403, "no entry\n")
        return None

    async with serve(handler, "127.0.0.1", 0, subprotocols=["chat.v1"],  # type: ignore[list-item]
                     process_request=refuse_some) as server:
        state.port = server.sockets[0].getsockname()[1]
        yield state


@dataclass
class Gateway:
    port: int
    upstream_port: int = 0
    contexts: list[RequestContext] = field(default_factory=list)


@pytest.fixture
async def gateway(echo: EchoUpstream) -> AsyncIterator[Gateway]:
    transport = PooledTransport()
    gw = Gateway(port=0, upstream_port=echo.port)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        scope["pyserve"] = ctx = RequestContext(request_id="ws-req-1")
        gw.contexts.append(ctx)
        target = UpstreamTarget("127.0.0.1", gw.upstream_port, scope["path"],
                                scope["query_string"], name="echo")
        await transport.websocket(scope, receive, send, target)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections queue until uvicorn accepts: no start-up wait needed
    gw.port = sock.getsockname()[1]
    # proxy_headers off: uvicorn would otherwise trust the test's X-Forwarded-For itself.
    # wsproto: uvicorn's websockets-sansio logs a spurious error after an HTTP denial.
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", ws="wsproto",
                                           proxy_headers=False, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield gw
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE)
        sock.close()
        await transport.aclose()


async def test_echo_both_kinds_and_upstream_close_code(gateway: Gateway, echo: EchoUpstream):
    uri = f"ws://127.0.0.1:{gateway.port}/echo?x=1"
    async with asyncio.timeout(DEADLINE):
        async with connect(uri, subprotocols=["chat.v1"],  # type: ignore[list-item]
                           additional_headers={"X-Forwarded-For": "9.9.9.9"}) as ws:
            assert ws.subprotocol == "chat.v1"
            # The same "host:port" as for HTTP (`headers.upstream_address`).
            assert [c.upstream for c in gateway.contexts] == [f"127.0.0.1:{echo.port}"]
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01bin")
            assert await ws.recv() == b"\x00\x01bin"
            await ws.send("close-4001")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")

    assert echo.path == "/echo?x=1"
    h = echo.request_headers
    assert h is not None
    assert h["Host"] == f"127.0.0.1:{gateway.port}"  # the client's Host, as for HTTP
    assert h["X-Forwarded-For"] == "127.0.0.1"  # a client-sent one is not believed
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Forwarded-Host"] == f"127.0.0.1:{gateway.port}"
    assert h["X-Request-ID"] == "ws-req-1"


async def test_client_close_code_reaches_upstream(gateway: Gateway, echo: EchoUpstream):
    async with asyncio.timeout(DEADLINE):
        async with connect(f"ws://127.0.0.1:{gateway.port}/",
                           subprotocols=["chat.v1"]) as ws:  # type: ignore[list-item]
            await ws.send("ping")
            assert await ws.recv() == "ping"
            await ws.close(4002, "client done")
        await echo.closed.wait()
    assert echo.close_codes == [4002]


async def test_upstream_refusal_status_is_relayed(gateway: Gateway):
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(DEADLINE):
            async with connect(f"ws://127.0.0.1:{gateway.port}/forbidden"):
                pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"no entry\n"


async def test_upstream_down_gives_502_through_uvicorn(gateway: Gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gateway.upstream_port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(DEADLINE):
            async with connect(f"ws://127.0.0.1:{gateway.port}/"):
                pass
    assert info.value.response.status_code == 502
    assert b"'echo'" in info.value.response.body


async def test_upstream_down_without_denial_extension_closes_1013():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "websocket", "scheme": "ws", "path": "/", "query_string": b"",
             "headers": [(b"host", b"gw.test")], "client": ("127.0.0.1", 1), "subprotocols": []}
    transport = PooledTransport()
    await asyncio.wait_for(
        transport.websocket(scope, receive, send, UpstreamTarget("127.0.0.1", port, "/")),
        DEADLINE,
    )
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == 1013
    assert "unreachable" in sent[1]["reason"]


@pytest.mark.parametrize(("host", "uri"), [
    (b"example.com:8080", "ws://example.com:8080/echo?a=1"),
    (b"[::1]:80", "ws://[::1]:80/echo?a=1"),
    (b"evil.test/admin", "ws://127.0.0.1:9/echo?a=1"),  # would move the path
    (b"user:pw@evil.test", "ws://127.0.0.1:9/echo?a=1"),  # would add credentials
    (b"", "ws://127.0.0.1:9/echo?a=1"),
])
def test_handshake_uri_uses_only_a_plain_client_host(host: bytes, uri: str):
    from gateway.proxy.websocket import _upstream_uri

    target = UpstreamTarget("127.0.0.1", 9, "/echo", b"a=1")
    assert _upstream_uri({"headers": [(b"host", host)]}, target) == uri
