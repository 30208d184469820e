"""PooledTransport.http against raw upstreams on 127.0.0.1 that send exact bytes."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from gateway.context import RequestContext
from gateway.errors import (
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.proxy import PooledTransport, UpstreamTarget
from gateway.proxy.client import READ_HIGH_WATER
from gateway.proxy.headers import Forwarding, may_resend
from tests.support.harness import wait_until
from tests.support.proxy import DEADLINE, AsgiClient, RawRequest, make_scope, ok, response

W = asyncio.StreamWriter


async def proxy(transport: PooledTransport, target: UpstreamTarget,
                client: AsgiClient | None = None, **scope_kw: object) -> AsgiClient:
    client = client or AsgiClient()
    await asyncio.wait_for(
        transport.http(make_scope(**scope_kw), client.receive, client.send, target),  # type: ignore[arg-type]
        DEADLINE,
    )
    return client


# -- response framing -------------------------------------------------------------------------

async def test_content_length_body(start_upstream, transport):
    up = await start_upstream(ok)
    c = await proxy(transport, up.target("/x", query=b"a=1"))
    assert c.status == 200
    assert bytes(c.body) == b"hello"
    assert c.headers[b"content-length"] == b"5"
    assert c.finished
    assert up.requests[0].target == "/x?a=1"


async def test_chunked_body_is_decoded_and_te_dropped(start_upstream, transport):
    async def chunked(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                         [("Transfer-Encoding", "chunked")], length=False))
        return True

    up = await start_upstream(chunked)
    c = await proxy(transport, up.target())
    assert bytes(c.body) == b"hello world"
    assert b"transfer-encoding" not in c.headers
    assert c.finished


async def test_head_has_no_body_and_connection_is_reused(start_upstream, transport):
    async def head_then_get(req: RawRequest, w: W) -> bool:
        if req.method == "HEAD":  # announces a body it does not send, as HEAD must
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            w.write(response(200, b"after-head"))
        return True

    up = await start_upstream(head_then_get)
    c = await proxy(transport, up.target(), method="HEAD")
    assert c.status == 200 and c.headers[b"content-length"] == b"1000"
    assert c.body == b"" and c.finished
    c2 = await proxy(transport, up.target())
    assert bytes(c2.body) == b"after-head"
    assert up.connections == 1


async def test_interim_100_continue_is_skipped(start_upstream, transport):
    async def cont(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                + response(201, b"made"))
        return True

    up = await start_upstream(cont)
    c = await proxy(transport, up.target())
    assert c.status == 201 and bytes(c.body) == b"made"
    assert b"link" not in c.headers


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(start_upstream, transport, status):
    async def empty(req: RawRequest, w: W) -> bool:
        w.write(f"HTTP/1.1 {status} X\r\nETag: \"1\"\r\n\r\n".encode())
        return True

    up = await start_upstream(empty)
    for _ in range(2):
        c = await proxy(transport, up.target())
        assert c.status == status and c.body == b"" and c.finished
    assert up.connections == 1


async def test_close_delimited_body(start_upstream, transport):
    async def until_close(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await w.drain()
        w.write(b"part two")
        return False

    up = await start_upstream(until_close)
    c = await proxy(transport, up.target())
    assert bytes(c.body) == b"part one, part two" and c.finished
    await proxy(transport, up.target())
    assert up.connections == 2


# -- keep-alive -----------------------------------------------------------------------------

async def test_keep_alive_reuses_one_connection(start_upstream, transport):
    up = await start_upstream(ok)
    for _ in range(3):
        await proxy(transport, up.target())
    assert up.connections == 1
    st = transport.stats()[f"127.0.0.1:{up.port}"]
    assert st["reused"] == 2 and st["idle"] == 1 and st["opened"] == 1


async def test_connection_close_is_honoured(start_upstream, transport):
    async def closing(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"bye", [("Connection", "close")]))
        return True  # the server would keep it open; the proxy must not reuse it anyway

    up = await start_upstream(closing)
    c = await proxy(transport, up.target())
    assert b"connection" not in c.headers
    await proxy(transport, up.target())
    assert up.connections == 2


async def test_idle_connection_closed_by_server_is_discarded(start_upstream, transport):
    async def once(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"x"))
        return False  # close after answering, without saying so

    up = await start_upstream(once)
    await proxy(transport, up.target())
    pool = transport._pools[("127.0.0.1", up.port)]
    await wait_until(lambda: pool.idle_count == 0, DEADLINE,
                     interval=0.002)  # the EOF was noticed while idle
    c = await proxy(transport, up.target())
    assert c.status == 200 and up.connections == 2


async def test_stale_pooled_connection_is_retried_for_get(start_upstream, transport):
    async def drop_second(req: RawRequest, w: W) -> bool:
        if len([r for r in up.requests if r.conn_no == req.conn_no]) == 2:
            w.transport.abort()  # the race: server closed the socket as we wrote
            return False
        w.write(response(200, b"ok"))
        return True

    up = await start_upstream(drop_second)
    await proxy(transport, up.target())
    c = await proxy(transport, up.target())
    assert c.status == 200 and bytes(c.body) == b"ok"
    assert up.connections == 2


async def test_stale_pooled_connection_not_retried_for_post_with_body(start_upstream, transport):
    async def drop_second(req: RawRequest, w: W) -> bool:
        if len([r for r in up.requests if r.conn_no == req.conn_no]) == 2:
            w.transport.abort()
            return False
        w.write(response(200, b"ok"))
        return True

    up = await start_upstream(drop_second)
    await proxy(transport, up.target())
    headers = [(b"host", b"gw.test"), (b"content-length", b"4")]
    with pytest.raises((UpstreamConnectError, UpstreamClosed)):
        await proxy(transport, up.target(), AsgiClient([b"data"]), method="POST",
                    headers=headers)
    assert up.connections == 1


async def test_stale_pooled_connection_is_retried_for_put_with_its_whole_body(
        start_upstream, transport):
    """PUT is idempotent, and a body that came in one piece is still at hand: the one
    resend rule (`headers.may_resend`) lets it go again, as nginx does."""
    async def drop_second(req: RawRequest, w: W) -> bool:
        if len([r for r in up.requests if r.conn_no == req.conn_no]) == 2:
            w.transport.abort()
            return False
        w.write(response(200, req.body))
        return True

    up = await start_upstream(drop_second)
    await proxy(transport, up.target())
    headers = [(b"host", b"gw.test"), (b"content-length", b"4")]
    c = await proxy(transport, up.target(), AsgiClient([b"data"]), method="PUT",
                    headers=headers)
    assert c.status == 200 and bytes(c.body) == b"data"
    assert up.connections == 2


def test_the_resend_rule() -> None:
    """Never sent (refused): any method goes again; sent and unanswered: idempotent only."""
    for method in ("GET", "PUT", "DELETE", "POST", "PATCH", "LOCK"):
        assert may_resend(method, sent=False)
    assert [m for m in ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH")
            if may_resend(m, sent=True)] == ["GET", "HEAD", "OPTIONS", "TRACE", "PUT",
                                             "DELETE"]


# -- request bodies ---------------------------------------------------------------------------

async def test_content_length_upload_is_streamed(start_upstream, transport):
    seen_first = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: W) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 12" in head.lower()
        first = await reader.readexactly(4)
        seen_first.set()  # the proxy sent part 1 before the client produced part 2
        rest = await reader.readexactly(8)
        writer.write(response(200, first + b"|" + rest))
        await writer.drain()

    up = await start_upstream(raw=handle)
    client = AsgiClient([b"abcd", b"efgh", b"ijkl"])
    client.gate[1] = seen_first
    c = await proxy(transport, up.target(), client, method="PUT",
                    headers=[(b"host", b"h"), (b"content-length", b"12")])
    assert bytes(c.body) == b"abcd|efghijkl"


async def test_chunked_upload_without_length(start_upstream, transport):
    async def echo(req: RawRequest, w: W) -> bool:
        w.write(response(200, req.body, [("X-TE", req.header("transfer-encoding") or "")]))
        return True

    up = await start_upstream(echo)
    parts = [b"one,", b"", b"two,", b"three"]
    c = await proxy(transport, up.target(), AsgiClient(parts), method="POST",
                    headers=[(b"host", b"h"), (b"transfer-encoding", b"chunked")])
    assert bytes(c.body) == b"one,two,three"
    assert c.headers[b"x-te"] == b"chunked"
    # No framing from the client (e.g. HTTP/2): multi-part body -> chunked too.
    c = await proxy(transport, up.target(), AsgiClient([b"a", b"b"]), method="POST")
    assert bytes(c.body) == b"ab" and c.headers[b"x-te"] == b"chunked"
    # ... and a single-part body gets a Content-Length.
    c = await proxy(transport, up.target(), AsgiClient([b"single"]), method="POST")
    assert bytes(c.body) == b"single"
    assert up.requests[-1].header("content-length") == "6"


async def test_upload_waits_for_upstream_drain(start_upstream, transport):
    """An upstream that does not read stops the proxy from pulling the client's body."""
    piece = b"u" * (256 * 1024)
    parts = [piece] * 256  # 64 MiB: far more than loopback socket buffers hold
    size = len(piece) * len(parts)
    release = asyncio.Event()

    async def lazy_reader(reader: asyncio.StreamReader, writer: W) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        left = size
        while left:
            left -= len(await reader.read(min(left, 1 << 20)))
        writer.write(response(200, b"%d" % size))
        await writer.drain()

    up = await start_upstream(raw=lazy_reader)
    client = AsgiClient(parts)
    task = asyncio.create_task(proxy(transport, up.target(), client, method="POST",
                                     headers=[(b"host", b"h"),
                                              (b"content-length", b"%d" % size)]))
    stats = transport.stats
    key = f"127.0.0.1:{up.port}"
    await wait_until(lambda: stats().get(key, {}).get("write_pauses", 0) > 0, DEADLINE,
                     interval=0.002)
    assert client.received < len(parts)  # parked on the upstream socket, not reading ahead
    release.set()
    c = await task
    assert bytes(c.body) == b"%d" % size


async def test_early_response_stops_the_upload(start_upstream, transport):
    """An upstream that answers before reading the body (413) gets its answer relayed."""
    answered = asyncio.Event()

    async def refuse(reader: asyncio.StreamReader, writer: W) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response(413, b"too big", reason="Payload Too Large"))
        await writer.drain()
        answered.set()
        while await reader.read(65536):  # keep reading so closing does not reset
            pass

    up = await start_upstream(raw=refuse)
    client = AsgiClient([b"a" * 1000, b"b" * 1000, b"c" * 1000])
    client.gate[1] = answered
    c = await proxy(transport, up.target(), client, method="POST",
                    headers=[(b"host", b"h"), (b"content-length", b"3000")])
    assert c.status == 413 and bytes(c.body) == b"too big"
    assert client.received == 2  # stopped pulling the body once the answer was in
    await up.until(lambda: up.closed_connections == 1)  # not reused: the body was cut short


# -- streaming and back-pressure ----------------------------------------------------------

async def test_sse_chunk_reaches_client_before_upstream_finishes(start_upstream, transport):
    release = asyncio.Event()

    async def sse(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"", [("Content-Type", "text/event-stream"),
                                    ("Transfer-Encoding", "chunked")], length=False))
        w.write(b"d\r\ndata: first\n\n\r\n")
        await w.drain()
        await release.wait()
        w.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        return True

    up = await start_upstream(sse)
    client = AsgiClient()
    task = asyncio.create_task(proxy(transport, up.target(), client))
    await asyncio.wait_for(client.first_body.wait(), DEADLINE)
    assert bytes(client.body) == b"data: first\n\n"
    assert not task.done()
    release.set()
    await task
    assert bytes(client.body) == b"data: first\n\ndata: second\n\n" and client.finished


async def test_large_body_to_slow_reader_stays_bounded(start_upstream, transport):
    size = 50 * 1024 * 1024
    block = b"z" * (1024 * 1024)

    async def big(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            w.write(block)
            await w.drain()
        return True

    async def slow(msg: dict) -> None:
        if msg["type"] == "http.response.body":
            await asyncio.sleep(0.0005)  # a client slower than loopback

    up = await start_upstream(big)
    client = AsgiClient(on_send=slow, keep_body=False)
    await asyncio.wait_for(transport.http(make_scope(), client.receive, client.send,
                                          up.target()), 20)
    assert client.body_bytes == size and client.finished
    st = transport.stats()[f"127.0.0.1:{up.port}"]
    assert st["read_pauses"] > 0
    # One socket read (256 KiB in asyncio) can land on top of a full buffer.
    assert st["max_buffered"] <= READ_HIGH_WATER + 256 * 1024
    assert max(m["body"] for m in client.sent if m["type"] == "http.response.body") \
        <= READ_HIGH_WATER + 256 * 1024
    assert st["idle"] == 1  # read to the end: reusable


# -- failures -------------------------------------------------------------------------------

async def test_upstream_dies_mid_response_after_start(start_upstream, transport):
    async def dies(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await w.drain()
        w.transport.abort()
        return False

    up = await start_upstream(dies)
    client = AsgiClient()
    with pytest.raises(UpstreamClosed):
        await proxy(transport, up.target(name="api"), client)
    assert client.status == 200  # started: the raise is what makes the server abort
    assert bytes(client.body) == b"0123456789" and not client.finished


async def test_upstream_dies_before_head(start_upstream, transport):
    async def half(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-")
        return False

    up = await start_upstream(half)
    client = AsgiClient()
    with pytest.raises(UpstreamClosed, match="mid-response"):
        await proxy(transport, up.target(), client)
    assert client.sent == []


async def test_refused_port(transport):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = AsgiClient()
    with pytest.raises(UpstreamConnectError, match="'shop'"):
        await proxy(transport, UpstreamTarget("127.0.0.1", port, "/", name="shop"), client)
    assert client.sent == []


async def test_hung_upstream_times_out(start_upstream, transport):
    never = asyncio.Event()

    async def hang(req: RawRequest, w: W) -> bool:
        await never.wait()
        return True

    up = await start_upstream(hang)
    t0 = time.perf_counter()
    with pytest.raises(UpstreamTimeout, match="response head within 0.3s"):
        await proxy(transport, up.target(timeout=0.3))
    assert 0.25 < time.perf_counter() - t0 < 2.0


async def test_idle_body_times_out(start_upstream, transport):
    never = asyncio.Event()

    async def stall(req: RawRequest, w: W) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await w.drain()
        await never.wait()
        return True

    up = await start_upstream(stall)
    client = AsgiClient()
    with pytest.raises(UpstreamTimeout, match="more response body"):
        await proxy(transport, up.target(timeout=0.3), client)
    assert bytes(client.body) == b"abc"


async def test_garbage_is_a_protocol_error(start_upstream, transport):
    async def garbage(req: RawRequest, w: W) -> bool:
        w.write(b"SMTP ready\r\n\r\n")
        return True

    up = await start_upstream(garbage)
    with pytest.raises(UpstreamProtocolError):
        await proxy(transport, up.target())


async def test_client_disconnect_while_streaming_closes_upstream(start_upstream, transport):
    never = asyncio.Event()

    async def stream(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"", [("Transfer-Encoding", "chunked")], length=False)
                + b"3\r\nabc\r\n")
        await w.drain()
        await never.wait()
        return True

    up = await start_upstream(stream)
    client = AsgiClient()
    task = asyncio.create_task(proxy(transport, up.target(), client))
    await asyncio.wait_for(client.first_body.wait(), DEADLINE)
    client.disconnect()
    await task  # returns quietly
    assert transport.stats()[f"127.0.0.1:{up.port}"]["open"] == 0


async def test_send_raising_oserror_is_a_quiet_disconnect(start_upstream, transport):
    async def broken(msg: dict) -> None:
        if msg["type"] == "http.response.body":
            raise ConnectionResetError("client went away")

    up = await start_upstream(ok)
    await proxy(transport, up.target(), AsgiClient(on_send=broken))
    await up.until(lambda: up.closed_connections == 1)


# -- headers --------------------------------------------------------------------------------

async def test_hop_by_hop_headers_dropped_both_ways(start_upstream, transport):
    async def hoppy(req: RawRequest, w: W) -> bool:
        w.write(response(200, b"k", [
            ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"),
            ("X-Secret", "s"), ("Proxy-Authenticate", "Basic"), ("Trailer", "X-T"),
            ("Upgrade", "h2c"), ("X-Kept", "yes"),
        ]))
        return True

    up = await start_upstream(hoppy)
    c = await proxy(transport, up.target(), headers=[
        (b"host", b"gw.test"), (b"connection", b"keep-alive, x-private"),
        (b"keep-alive", b"300"), (b"te", b"trailers"), (b"x-private", b"p"),
        (b"proxy-authorization", b"Basic Zm9v"), (b"upgrade", b"websocket"),
        (b"proxy-connection", b"keep-alive"), (b"trailer", b"x"), (b"x-app", b"a"),
    ])
    sent = up.requests[0].names()
    assert not sent & {"connection", "keep-alive", "te", "x-private", "proxy-authorization",
                       "upgrade", "proxy-connection", "trailer"}
    assert up.requests[0].header("x-app") == "a"
    assert set(c.headers) == {b"content-length", b"x-kept"}


SPOOFED = [(b"host", b"example.test"), (b"x-forwarded-for", b"1.1.1.1"),
           (b"x-request-id", b"spoofed"), (b"x-forwarded-proto", b"gopher"),
           (b"x-forwarded-host", b"evil.test"), (b"x-forwarded-prefix", b"/evil"),
           (b"forwarded", b"for=1.1.1.1;host=evil.test")]


async def test_forwarded_headers_and_request_id(start_upstream, transport):
    """From an untrusted peer every forwarding header is the gateway's own."""
    up = await start_upstream(ok)
    ctx = RequestContext(request_id="req-123", traceparent="00-abc-def-01")
    await proxy(transport, up.target(name="api", prefix="/api"), scheme="https", ctx=ctx,
                peer=("10.1.2.3", 1), headers=SPOOFED)
    req = up.requests[0]
    assert req.header("host") == "example.test"
    assert req.header("x-forwarded-for") == "10.1.2.3"
    assert req.header("x-forwarded-proto") == "https"
    assert req.header("x-forwarded-host") == "example.test"
    assert req.header("x-forwarded-prefix") == "/api"
    assert req.header("forwarded") == 'for=10.1.2.3;host="example.test";proto=https'
    assert req.header("x-request-id") == "req-123"
    assert req.header("traceparent") == "00-abc-def-01"
    assert ctx.upstream == f"127.0.0.1:{up.port}"
    assert ctx.upstream_connect_ms is not None and ctx.upstream_ttfb_ms is not None
    assert ctx.upstream_total_ms is not None and ctx.upstream_total_ms >= ctx.upstream_ttfb_ms


async def test_forwarding_headers_from_a_trusted_proxy_are_extended(start_upstream):
    up = await start_upstream(ok)
    transport = PooledTransport(forwarding=Forwarding(["10.0.0.0/8"]))
    try:
        await proxy(transport, up.target(), peer=("10.1.2.3", 1), headers=SPOOFED)
        await proxy(transport, up.target(), peer=("192.0.2.9", 1), headers=SPOOFED)
    finally:
        await transport.aclose()
    trusted, untrusted = up.requests
    assert trusted.header("x-forwarded-for") == "1.1.1.1, 10.1.2.3"
    assert trusted.header("x-forwarded-proto") == "gopher"
    assert trusted.header("x-forwarded-host") == "evil.test"
    assert trusted.header("x-forwarded-prefix") is None  # the gateway's word only
    assert trusted.header("forwarded") == "for=1.1.1.1;host=evil.test, for=10.1.2.3"
    assert untrusted.header("x-forwarded-for") == "192.0.2.9"
    assert untrusted.header("x-forwarded-host") == "example.test"


async def test_no_context_means_no_request_id_and_host_fallback(start_upstream, transport):
    up = await start_upstream(ok)
    await proxy(transport, up.target(), headers=[(b"x-request-id", b"from-client")], peer=None)
    req = up.requests[0]
    assert req.header("x-request-id") == "from-client"
    assert req.header("host") == f"127.0.0.1:{up.port}"
    assert req.header("x-forwarded-for") is None


async def test_path_is_encoded_only_where_http_requires(start_upstream, transport):
    up = await start_upstream(ok)
    await proxy(transport, up.target("/a b/ü"))
    await proxy(transport, up.target("/raw%2Fkept"))
    assert [r.target for r in up.requests] == ["/a%20b/%C3%BC", "/raw%2Fkept"]


async def test_reprs_say_what_state_things_are_in(start_upstream, transport):
    up = await start_upstream(ok)
    await proxy(transport, up.target())
    pool = transport._pools[("127.0.0.1", up.port)]
    assert f"127.0.0.1:{up.port}" in repr(transport)
    assert "idle=1" in repr(pool)
    assert "idle exchanges=1" in repr(pool._idle[0])
