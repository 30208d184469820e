"""The direct path (`gateway.direct`): bodyless proxied requests served without ASGI on the
built-in front, and everything it cannot finish handed to the ASGI path without a request
sent twice.

Each test serves a real pipeline (`serve_config`) on the built-in front in front of a raw
upstream whose every byte the test controls, and talks to it over a raw socket. The first
request on a fresh gateway takes the ASGI path (no pooled connection yet, so nothing to send
on at once); the ones after it are direct, which `GatewayApp.direct_started` confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import ServedGateway, serve_config, wait_until
from tests.support.proxy import RawRequest, Upstream, response

DEADLINE = 5.0

PIPELINE = """
[[extensions]]
type = "security"
[[extensions]]
type = "monitoring"
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"/" = {{ proxy_pass = "http://127.0.0.1:{port}", proxy_timeout = {timeout} }}
"""


class Client:
    """One keep-alive client connection, reading whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, method: str = "GET", path: str = "/x",
                      extra: str = "") -> tuple[int, dict[str, list[str]], bytes]:
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: gw\r\n{extra}\r\n".encode())
        return await self.read(head_only=method == "HEAD")

    async def read(self, head_only: bool = False) -> tuple[int, dict[str, list[str]], bytes]:
        async with asyncio.timeout(DEADLINE):
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            headers: dict[str, list[str]] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers.setdefault(name.strip().lower(), []).append(value.strip())
            body = b""
            if not head_only and "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"][0]))
            return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def gateway(start_upstream: Callable[..., Awaitable[Upstream]], tmp_path: Path,
                  ) -> AsyncIterator[Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]]:
    """`await gateway(respond, timeout=...)`: a gateway proxying everything to a raw
    upstream answering with `respond`."""
    async with contextlib.AsyncExitStack() as stack:
        async def make(respond: Any, timeout: float = 5.0,
                       pipeline: str = PIPELINE) -> tuple[ServedGateway, Upstream]:
            up = await start_upstream(respond)
            gw = await stack.enter_async_context(serve_config(
                pipeline.format(port=up.port, timeout=timeout), tmp_path))
            return gw, up

        yield make


async def connect(gw: ServedGateway) -> Client:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    return Client(reader, writer)


async def after_a_pooled_request(gw: ServedGateway,
                                 path: str) -> tuple[int, dict[str, list[str]], bytes]:
    """GET `path` on a connection whose first request (`/x`, the ASGI path) left an idle
    pooled upstream connection behind, so `path` can take the direct path."""
    client = await connect(gw)
    try:
        await client.request()
        return await client.request(path=path)
    finally:
        client.close()


async def ok(req: RawRequest, writer: asyncio.StreamWriter) -> None:
    writer.write(response(200, b"hello", [("Content-Type", "text/plain"),
                                          ("X-Frame-Options", "SAMEORIGIN"),
                                          ("Date", ORIGIN_DATE)]))


ORIGIN_DATE = "Sat, 01 Jan 2000 00:00:00 GMT"


async def test_a_proxied_get_is_served_directly_as_the_asgi_path_serves_it(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    gw, up = await gateway(ok)
    client = await connect(gw)
    try:
        first = await client.request()  # the ASGI path: no pooled connection yet
        assert gw.app.direct_started == 0
        second = await client.request(extra="X-Request-ID: trace-me-1\r\n")
        assert gw.app.direct_started == 1
    finally:
        client.close()
    for status, headers, body in (first, second):
        assert (status, body) == (200, b"hello")
        assert headers["x-frame-options"] == ["SAMEORIGIN"]  # the app's own wins
        assert headers["date"] == [ORIGIN_DATE]  # one Date: the origin's
        assert headers["x-content-type-options"] == ["nosniff"]  # security's default
        assert len(headers["x-request-id"]) == 1
    assert second[1]["x-request-id"] == ["trace-me-1"]
    # The same head, header for header (ids and dates aside).
    assert [h for h in first[1] if h not in ("date",)] == \
        [h for h in second[1] if h not in ("date",)]
    # The upstream saw the id and the forwarding headers both times.
    assert up.requests[1].header("x-request-id") == "trace-me-1"
    assert up.requests[1].header("x-forwarded-for") == "127.0.0.1"
    assert len(up.requests) == 2 and up.connections == 1
    # Counted as the ASGI path counts: metrics, each member, the request log.
    ext = gw.app.pipeline.metrics()
    assert ext["security"]["allowed"] == 2
    assert ext["routing"]["locations"] == {"/": 2}
    assert ext["monitoring"]["requests"] == 2
    gw.services.metrics.fold()
    assert gw.services.metrics.gateway.requests == 2
    records = gw.services.request_log.snapshot()
    assert [(r.status, r.route, r.upstream, r.path) for r in records] == \
        [(200, "/", f"127.0.0.1:{up.port}", "/x")] * 2
    assert records[1].request_id == "trace-me-1"


async def plain(req: RawRequest, writer: asyncio.StreamWriter) -> None:
    writer.write(response(200, b"plain", [("Content-Type", "text/plain")]))


async def test_security_headers_go_out_once_encoded_ahead_and_are_logged(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    """An upstream that sets none of security's headers gets them as one pre-encoded block
    on the direct path (`direct.Extra`): the same fields, once each, as on the ASGI path,
    and in the request log."""
    gw, _ = await gateway(plain)
    client = await connect(gw)
    try:
        first = await client.request()  # the ASGI path
        second = await client.request()
        assert gw.app.direct_started == 1
    finally:
        client.close()
    expected = {"x-content-type-options": ["nosniff"], "x-frame-options": ["DENY"],
                "referrer-policy": ["strict-origin-when-cross-origin"],
                "cross-origin-opener-policy": ["same-origin"],
                "permissions-policy": ["camera=(), microphone=(), geolocation=()"]}
    for status, headers, body in (first, second):
        assert (status, body) == (200, b"plain")
        assert {k: v for k, v in headers.items() if k in expected} == expected
        assert "strict-transport-security" not in headers  # http: no HSTS
    # The same fields (their order differs: fields of different names have none, RFC 9110).
    assert sorted(first[1]) == sorted(second[1])
    records = gw.services.request_log.snapshot()
    for record in records:
        logged = [name.decode("latin-1") for name, _ in record.response_headers]
        assert sorted(logged) == sorted(set(logged))  # each once
        assert {"x-frame-options", "x-request-id", "content-type"} <= set(logged)


async def test_a_streamed_response_is_handed_to_the_asgi_path_and_not_sent_twice(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    gate = asyncio.Event()

    async def stream(req: RawRequest, writer: asyncio.StreamWriter) -> None:
        if req.target != "/stream":
            await ok(req, writer)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    gw, up = await gateway(stream)
    client = await connect(gw)
    try:
        await client.request()
        client.writer.write(b"GET /stream HTTP/1.1\r\nHost: gw\r\n\r\n")
        async with asyncio.timeout(DEADLINE):
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            assert await client.reader.readuntil(b"first\r\n")  # streamed before the end
            gate.set()
            rest = await client.reader.readuntil(b"0\r\n\r\n")
        assert b"second" in rest
        status, _, body = await client.request()
        assert (status, body) == (200, b"hello")
    finally:
        client.close()
    assert gw.app.direct_started == 2  # /stream and the request after it
    assert [r.target for r in up.requests] == ["/x", "/stream", "/x"]  # nothing resent


async def test_a_pooled_connection_the_upstream_drops_is_resent_once(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    async def drop_second(req: RawRequest, writer: asyncio.StreamWriter) -> bool | None:
        if req.target == "/drop" and sum(r.target == "/drop" for r in up.requests) == 1:
            return False  # close without an answer, as a server timing out its keep-alive
        await ok(req, writer)
        return None

    gw, up = await gateway(drop_second)
    status, _, body = await after_a_pooled_request(gw, "/drop")
    assert (status, body) == (200, b"hello")
    assert gw.app.direct_started == 1
    # Sent on the pooled connection, which closed unanswered, then once more on a new one.
    assert [(r.target, r.conn_no) for r in up.requests] == [("/x", 1), ("/drop", 1),
                                                             ("/drop", 2)]


async def test_an_upstream_that_never_answers_gets_504_when_its_timeout_passes(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    async def hang(req: RawRequest, writer: asyncio.StreamWriter) -> None:
        if req.target == "/hang":
            await asyncio.Event().wait()
        await ok(req, writer)

    gw, up = await gateway(hang, timeout=0.3)
    status, headers, body = await after_a_pooled_request(gw, "/hang")
    assert gw.app.direct_started == 1
    assert status == 504
    assert b"no response head within 0.3s" in body
    assert len(headers["x-request-id"]) == 1
    assert [r.target for r in up.requests] == ["/x", "/hang"]


async def test_head_requests_and_clients_that_leave_before_the_answer(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    gate = asyncio.Event()

    async def slow(req: RawRequest, writer: asyncio.StreamWriter) -> None:
        if req.target == "/slow":
            await gate.wait()
        await ok(req, writer)

    gw, up = await gateway(slow)
    client = await connect(gw)
    try:
        await client.request()
        status, headers, body = await client.request("HEAD")
        assert (status, headers["content-length"], body) == (200, ["5"], b"")
        client.writer.write(b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        await up.until(lambda: len(up.requests) == 3)
    finally:
        # A reset, not a FIN: a client that half-closes still gets its answer.
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    front = gw.handle._front  # type: ignore[attr-defined]
    await wait_until(lambda: not front.connections, DEADLINE, what="the client gone",
                     interval=0.01)
    gate.set()
    pool = gw.services.transport.pool("127.0.0.1", up.port)
    log = gw.services.request_log
    await wait_until(lambda: len(log.snapshot()) == 3, DEADLINE, what="3 requests logged",
                     interval=0.01)
    # The answer that came for nobody still ends the exchange: logged, connection pooled.
    assert gw.app.direct_started == 2
    assert [r.path for r in log.snapshot()] == ["/x", "/x", "/slow"]
    assert pool.idle_count == 1 and pool.busy == 0


async def test_a_pipeline_with_a_member_that_cannot_plan_never_goes_direct(
        gateway: Callable[..., Awaitable[tuple[ServedGateway, Upstream]]]) -> None:
    with_cors = PIPELINE + '[[extensions]]\ntype = "cors"\n'
    gw, up = await gateway(ok, pipeline=with_cors)
    client = await connect(gw)
    try:
        for _ in range(3):
            assert (await client.request())[0] == 200
    finally:
        client.close()
    assert gw.app.direct_started == 0
    assert len(up.requests) == 3
