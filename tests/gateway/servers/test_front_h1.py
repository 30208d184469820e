"""The built-in front as a server facing hostile and unusual clients, over real sockets.

Each case sends raw bytes to a `FrontServer` serving a small echo app in this process and
reads what comes back. The rules for a refused request: the status named, `connection:
close`, the connection closed, and nothing after it answered (a request smuggled behind
it never reaches the app).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.frames import Frame, Opcode

from gateway.config.schema import ServerConfig
from gateway.servers.base import ServingHandle
from gateway.servers.h1 import BODY_HIGH_WATER, MAX_FIELDS
from gateway.servers.listener import create_listener
from gateway.servers.registry import BackendRegistry
from gateway.types import Message, Receive, Scope, Send

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
seen_paths: list[str] = []


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echoes method, path, Host and body as JSON; a few paths misbehave on purpose."""
    if scope["type"] == "websocket":
        await websocket_app(scope, receive, send)
        return
    seen_paths.append(scope["path"])
    path = scope["path"]
    if path == "/no-read":  # answers without reading the body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/slow":
        await asyncio.sleep(0.2)
    if path == "/hold":
        await asyncio.Event().wait()
    if path == "/split":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-evil", b"a\r\nset-cookie: evil=1")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path.startswith("/control/"):  # /control/<where>/<hex byte>
        _, _, where, code = path.split("/")
        byte = bytes([int(code, 16)])
        header = (b"x-" + byte + b"evil", b"1") if where == "name" \
            else (b"x-evil", b"a" + byte + b"b")
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/204-with-body":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"HTTP/1.1 200 OK\r\n\r\nsmuggled"})
        return
    if path == "/raise":
        raise RuntimeError("boom")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one ", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(256):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            big_progress.append(1)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    host = next((v.decode() for k, v in scope["headers"] if k == b"host"), None)
    out = json.dumps({"method": scope["method"], "path": path, "host": host,
                      "version": scope["http_version"], "body": body.decode("latin-1"),
                      "query": scope["query_string"].decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})


big_progress: list[int] = []


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    first = await receive()
    assert first["type"] == "websocket.connect"
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.http.response.start", "status": 451,
                    "headers": [(b"content-length", b"6")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    if scope["path"] == "/ws/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0],
                "headers": [(b"x-scope", f"{scope['path']}?{scope['query_string'].decode()}"
                             .encode())]})
    while True:
        message: Message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        if "text" in message and message["text"] is not None:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


SETTINGS = ServerConfig(host="127.0.0.1", port=0, keep_alive_timeout=0.6,
                        graceful_timeout=3)


@pytest.fixture
async def front() -> AsyncIterator[tuple[ServingHandle, int]]:
    sock = create_listener("127.0.0.1", 0)
    handle = await BackendRegistry.get("builtin").serve_gateway(echo_app, sock, SETTINGS)
    seen_paths.clear()
    try:
        yield handle, sock.getsockname()[1]
    finally:
        await handle.stop(2)
        sock.close()


async def exchange(port: int, data: bytes, *, timeout: float = 5.0,
                   half_close: bool = False) -> tuple[bytes, bool]:
    """Send `data`, read until the server closes (or `timeout`): (bytes, closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if half_close:
        writer.write_eof()
    out = b""
    closed = False
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                    break
                out += chunk
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return out, closed


def statuses(raw: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def post(*headers: bytes, body: bytes = b"", path: bytes = b"/echo",
         version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST " + path + b" " + version + b"\r\nHost: x\r\n" + \
        b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


#: Framing no server may accept as valid (request smuggling and its relatives).
REFUSED: dict[str, tuple[bytes, int]] = {
    "CL.TE": (post(b"Content-Length: 6", b"Transfer-Encoding: chunked",
                   body=b"0\r\n\r\nG"), 400),
    "TE.CL": (post(b"Transfer-Encoding: chunked", b"Content-Length: 4",
                   body=b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), 400),
    "TE chunked, identity": (post(b"Transfer-Encoding: chunked, identity",
                                  body=b"0\r\n\r\n"), 400),
    "TE identity, chunked": (post(b"Transfer-Encoding: identity, chunked",
                                  body=b"0\r\n\r\n"), 400),
    "TE xchunked": (post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    "TE twice": (post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                      body=b"0\r\n\r\n"), 400),
    "TE then junk": (post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: x",
                          body=b"0\r\n\r\n"), 400),
    "TE space before colon": (post(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400),
    "TE folded": (post(b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"), 400),
    "TE on HTTP/1.0": (post(b"Transfer-Encoding: chunked", body=b"0\r\n\r\n",
                            version=b"HTTP/1.0"), 400),
    "two lengths, same": (post(b"Content-Length: 1", b"Content-Length: 1", body=b"a"), 400),
    "two lengths, different": (post(b"Content-Length: 1", b"Content-Length: 2",
                                    body=b"ab"), 400),
    "length list": (post(b"Content-Length: 1, 1", body=b"a"), 400),
    "length with sign": (post(b"Content-Length: +1", body=b"a"), 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "bare CR in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "chunk size overflow": (post(b"Transfer-Encoding: chunked",
                                 body=b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk size not hex": (post(b"Transfer-Encoding: chunked",
                                body=b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    "NUL in a chunk extension": (post(b"Transfer-Encoding: chunked",
                                      body=b"5;\x00\r\nhello\r\n0\r\n\r\n"), 400),
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "Host with a slash": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    "HTTP/0.9": (b"GET /\r\n\r\n", 400),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
    "asterisk form": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "absolute form, not http": (b"GET ftp://a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "Expect other than 100-continue": (post(b"Expect: 200-ok", b"Content-Length: 1",
                                            body=b"a"), 417),
    "target too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "header line too long": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000
                             + b"\r\n\r\n", 431),
    "too many headers": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_FIELDS + 1))
                         + b"\r\n", 431),
    "head too large": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                       + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(9))
                       + b"\r\n", 431),
}


@pytest.mark.parametrize("name", REFUSED)
async def test_bad_framing_and_heads_are_refused_and_nothing_after_is_answered(
        front: tuple[ServingHandle, int], name: str) -> None:
    data, status = REFUSED[name]
    raw, closed = await exchange(front[1], data + SMUGGLED)
    assert statuses(raw) == [status], raw[:300]
    assert b"connection: close" in raw
    assert closed, "the connection stayed open after a refusal"
    assert "/smuggled" not in seen_paths
    assert b"/smuggled" not in raw


async def test_a_head_that_grows_without_end_is_refused(
        front: tuple[ServingHandle, int]) -> None:
    """One header line that never ends: refused by the bytes read, not the parsed fields."""
    raw, closed = await exchange(front[1], b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
                                 + b"a" * 100_000, timeout=3)
    assert statuses(raw) == [431] and closed


async def test_bodies_over_max_body_size_get_413() -> None:
    sock = create_listener("127.0.0.1", 0)
    settings = ServerConfig(host="127.0.0.1", port=0, max_body_size=10)
    handle = await BackendRegistry.get("builtin").serve_gateway(echo_app, sock, settings)
    port = sock.getsockname()[1]
    try:
        raw, closed = await exchange(port, post(b"Content-Length: 11", body=b"x" * 11))
        assert statuses(raw) == [413] and closed
        raw, closed = await exchange(port, post(b"Transfer-Encoding: chunked",
                                                body=b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n"))
        assert statuses(raw) in ([413], [200, 413]) and closed
        raw, _ = await exchange(port, post(b"Content-Length: 10", b"Connection: close",
                                           body=b"x" * 10))
        assert statuses(raw) == [200]
    finally:
        await handle.stop(2)
        sock.close()


async def test_connections_over_the_limit_get_503() -> None:
    sock = create_listener("127.0.0.1", 0)
    settings = ServerConfig(host="127.0.0.1", port=0, max_concurrent_connections=1)
    handle = await BackendRegistry.get("builtin").serve_gateway(echo_app, sock, settings)
    port = sock.getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        raw, closed = await exchange(port, b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(raw) == [503] and closed
        writer.close()
    finally:
        await handle.stop(2)
        sock.close()


def test_a_burst_of_connections_is_accepted_in_one_go() -> None:
    """Connections queued in the kernel all become connections within a few loop iterations,
    not one per iteration (uvloop's own server): under load each iteration serves every busy
    connection first, and the last of a burst of new ones waited behind all of them."""
    uvloop = pytest.importorskip("uvloop")
    burst = 64

    async def main() -> int:
        sock = create_listener("127.0.0.1", 0)
        handle = await BackendRegistry.get("builtin").serve_gateway(echo_app, sock, SETTINGS)
        front_server = handle._app  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        clients: list[socket.socket] = []
        try:
            # The loop does not run while these connect: they wait in the accept queue.
            clients = [socket.create_connection(sock.getsockname()) for _ in range(burst)]
            counted: asyncio.Future[int] = loop.create_future()
            iterations = 0

            def tick() -> None:
                nonlocal iterations
                iterations += 1
                if len(front_server.connections) == burst:
                    counted.set_result(iterations)
                else:
                    loop.call_soon(tick)

            loop.call_soon(tick)
            return await asyncio.wait_for(counted, 10)
        finally:
            for client in clients:
                client.close()
            await handle.stop(2)
            sock.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) <= 5


async def test_a_chunk_size_near_the_limit_keeps_the_rest_as_body(
        front: tuple[ServingHandle, int]) -> None:
    """A 16-digit chunk size is valid: what follows is body bytes, never a request."""
    data = post(b"Transfer-Encoding: chunked", body=b"ffffffffffffffff\r\n") + SMUGGLED
    raw, closed = await exchange(front[1], data, timeout=1.0, half_close=True)
    assert "/smuggled" not in seen_paths
    assert statuses(raw) in ([], [400]), raw  # the body never ends; a cut body is 400


async def test_chunked_bodies_with_extensions_and_trailers_are_read(
        front: tuple[ServingHandle, int]) -> None:
    body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    raw, _ = await exchange(front[1], post(b"Transfer-Encoding: chunked", b"Connection: close",
                                           body=body))
    assert statuses(raw) == [200]
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["body"] == "hello world"


async def test_a_tab_before_chunked_is_whitespace(front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], post(b"Transfer-Encoding:\tchunked", b"Connection: close",
                                           body=b"2\r\nok\r\n0\r\n\r\n"))
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["body"] == "ok"


async def test_absolute_form_targets_take_their_authority_as_host(
        front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\n"
                                      b"Host: other\r\nConnection: close\r\n\r\n")
    seen = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert (seen["path"], seen["query"], seen["host"]) == ("/p/q", "x=1", "example.com:8080")


async def test_the_path_is_percent_decoded_as_utf8(front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], b"GET /caf%C3%A9/a%20b?q=%C3%A9 HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    seen = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert (seen["path"], seen["query"]) == ("/caf\u00e9/a b", "q=%C3%A9")


async def test_pipelined_requests_are_answered_in_order(
        front: tuple[ServingHandle, int]) -> None:
    requests = (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                + post(b"Content-Length: 3", body=b"abc", path=b"/second")
                + b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw, closed = await exchange(front[1], requests)
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1][:part.index(b"}") + 1])
              for part in raw.split(b"HTTP/1.1 ")[1:]]
    assert [b["path"] for b in bodies] == ["/slow", "/second", "/third"]
    assert bodies[1]["body"] == "abc"
    assert closed


async def test_http10_closes_unless_kept_alive(front: tuple[ServingHandle, int]) -> None:
    raw, closed = await exchange(front[1], b"GET /a HTTP/1.0\r\n\r\n")
    assert statuses(raw) == [200] and closed
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["version"] == "1.0"
    reader, writer = await asyncio.open_connection("127.0.0.1", front[1])
    try:
        for _ in range(2):
            writer.write(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b"connection: keep-alive" in head
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        # A response of unknown length to HTTP/1.0 ends with the connection.
        writer.write(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 5)
        assert b"connection: close" in rest and rest.endswith(b"one two")
    finally:
        writer.close()


async def test_expect_100_continue(front: tuple[ServingHandle, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front[1])
    try:
        writer.write(post(b"Expect: 100-continue", b"Content-Length: 5"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    # Answered without reading: no 100, and the connection closes (the body never came).
    raw, closed = await exchange(front[1], post(b"Expect: 100-continue", b"Content-Length: 5",
                                                path=b"/no-read"))
    assert b"100 Continue" not in raw and statuses(raw) == [200]
    assert b"connection: close" in raw and closed


async def test_a_small_unread_body_is_dropped_and_the_connection_kept(
        front: tuple[ServingHandle, int]) -> None:
    data = post(b"Content-Length: 5", body=b"hello", path=b"/no-read") + \
        b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw, _ = await exchange(front[1], data)
    assert statuses(raw) == [200, 200]
    assert seen_paths == ["/no-read", "/next"]


async def test_idle_and_slow_heads_are_cut_off(front: tuple[ServingHandle, int]) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    raw, closed = await exchange(front[1], b"", timeout=5)
    assert (raw, closed) == (b"", True)
    assert loop.time() - began < 0.6 + 1.5
    raw, closed = await exchange(front[1], b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert statuses(raw) == [408] and closed


async def test_request_body_backpressure_bounds_the_buffer(
        front: tuple[ServingHandle, int]) -> None:
    """An app that does not read: the server stops reading, so the client's sends block."""
    sock = socket.create_connection(("127.0.0.1", front[1]))
    try:
        sock.setblocking(False)
        sock.send(post(b"Content-Length: 100000000", path=b"/hold"))
        sent = 0
        chunk = b"x" * 65536
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while loop.time() < deadline:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                await asyncio.sleep(0.05)
        front_server = front[0]._app  # type: ignore[attr-defined]
        (conn,) = front_server.connections
        assert conn.reading_paused
        assert len(conn.current.body) <= BODY_HIGH_WATER + 300_000
        assert sent < 20_000_000  # only the kernel's buffers took more
    finally:
        sock.close()


async def test_response_backpressure_holds_the_app(front: tuple[ServingHandle, int]) -> None:
    big_progress.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", front[1], limit=1 << 16)
    try:
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(1.0)  # not reading: the app must be held back
        held = len(big_progress)
        assert held < 256
        got = 0
        async with asyncio.timeout(10):
            while not (await reader.read(1 << 20)).endswith(b"0\r\n\r\n"):
                got += 1
        assert len(big_progress) == 256
    finally:
        writer.close()


async def test_a_body_on_a_bodyless_status_never_reaches_the_wire(
        front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], b"GET /204-with-body HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    assert statuses(raw) == [204] and b"smuggled" not in raw


async def test_response_splitting_is_refused(front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(raw) == [500]
    assert b"evil" not in raw


@pytest.mark.parametrize("where", ["name", "value"])
@pytest.mark.parametrize("byte", [0x00, 0x0a, 0x0d, 0x01, 0x1f, 0x7f])
async def test_a_control_byte_in_a_response_header_is_refused(
        front: tuple[ServingHandle, int], where: str, byte: int) -> None:
    raw, _ = await exchange(front[1], f"GET /control/{where}/{byte:02x} HTTP/1.1\r\n"
                                      "Host: x\r\n\r\n".encode())
    assert statuses(raw) == [500]
    assert b"evil" not in raw


async def test_a_tab_in_a_response_header_value_is_sent(
        front: tuple[ServingHandle, int]) -> None:
    raw, _ = await exchange(front[1], b"GET /control/value/09 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(raw) == [200]
    assert b"x-evil: a\tb\r\n" in raw


async def test_an_app_error_is_a_500_and_the_server_lives(
        front: tuple[ServingHandle, int]) -> None:
    raw, closed = await exchange(front[1], b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(raw) == [500] and closed
    raw, _ = await exchange(front[1], b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [200]


async def test_a_body_cut_short_reaches_the_app_as_a_disconnect(
        front: tuple[ServingHandle, int]) -> None:
    raw, closed = await exchange(front[1], post(b"Content-Length: 100", body=b"hello"),
                                 half_close=True)
    assert closed and statuses(raw) in ([], [400])


async def test_drain_closes_after_the_response_in_flight(
        front: tuple[ServingHandle, int]) -> None:
    handle, port = front
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(handle.stop(2))
        rest = await asyncio.wait_for(reader.read(), 5)
        assert statuses(rest) == [200] and b"connection: close" in rest
        await asyncio.wait_for(stopping, 5)
    finally:
        writer.close()


async def test_websocket_sessions_get_the_asgi_websocket_scope(
        front: tuple[ServingHandle, int]) -> None:
    port = front[1]
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/echo?room=1",
                                  subprotocols=["chat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat"
        assert ws.response is not None
        assert ws.response.headers["x-scope"] == "/ws/echo?room=1"
        await ws.send("hello")
        assert await ws.recv() == "HELLO"
        await ws.send(b"abc")
        assert await ws.recv() == b"cba"
        await ws.send("bye")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    with pytest.raises(websockets.InvalidStatus) as denied:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/deny"):
            pass
    assert denied.value.response.status_code == 451
    assert denied.value.response.body == b"denied"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/refuse"):
            pass
    assert refused.value.response.status_code == 403
    # A text message that is not UTF-8 closes the session with 1007.
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe"))
        ws.send_data()
        with pytest.raises(websockets.ConnectionClosed) as bad:
            await ws.recv()
        assert bad.value.rcvd is not None and bad.value.rcvd.code == 1007
    # Not a valid handshake (no key): refused before the app runs.
    raw, closed = await exchange(port, b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert statuses(raw) and 400 <= statuses(raw)[0] < 500 and closed
