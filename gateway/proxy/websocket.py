"""Proxy an ASGI websocket session to an upstream ``ws://`` endpoint with ``websockets``.

Websocket traffic is message-at-a-time and long-lived, so per-message cost matters less than for
HTTP; a maintained client library is the right trade here. Two pump tasks relay messages, and
whichever side closes first ends both, with its close code passed to the other side.

The upstream is dialled at ``target.host:target.port`` while the handshake carries the
client's Host (as the HTTP path does), so virtual-host checks in the app see the real name.
If the upstream cannot be reached, the client gets an HTTP 502/504 denial when the server
supports the ``websocket.http.response`` extension, otherwise an accepted socket closed with
1013 (try again later: the app is down or slow) or 1011 (the app refused or broke).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from gateway.context import get_context
from gateway.proxy.headers import (
    HOP_BY_HOP,
    Forwarding,
    encode_path,
    upstream_address,
    websocket_headers,
)
from gateway.types import Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.proxy.transport import UpstreamTarget

#: Largest message relayed; matches uvicorn's default ``ws_max_size`` so the proxy is not the
#: tighter limit, while one huge message still cannot take all memory.
MAX_MESSAGE = 16 * 1024 * 1024
CLOSE_TIMEOUT = 5.0

# Codes that exist only as "no frame / broken" markers and must never be sent in a frame.
_UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}
_SKIP_RESPONSE_HEADERS = frozenset({"date", "server", "content-length"})
_PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9\-._]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class _NoRedirects(connect):
    """A proxy relays; it does not follow a redirect on the client's behalf."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _sendable(code: int | None) -> int:
    if code is None:
        return 1011
    code = _UNSENDABLE.get(code, code)
    return code if 1000 <= code < 5000 and code != 1004 else 1011


async def proxy_websocket(scope: Scope, receive: Receive, send: Send, target: UpstreamTarget,
                          *, connect_timeout: float = 5.0,
                          forwarding: Forwarding | None = None) -> None:
    """Relay one websocket session. Never raises for upstream trouble: the client socket is
    closed (or the handshake denied) with a code that says what happened."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    ctx = get_context(scope)
    if ctx is not None:
        ctx.upstream = upstream_address(target.host, target.port)
    headers = websocket_headers(scope, ctx, forwarding, target.prefix)
    origin = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"origin"), None)
    uri = _upstream_uri(scope, target)
    try:
        upstream = await _NoRedirects(
            uri, host=target.host, port=target.port, proxy=None,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=scope.get("subprotocols") or None,
            additional_headers=headers, user_agent_header=None,
            compression=None,  # a loopback hop gains nothing from deflate
            open_timeout=connect_timeout + target.timeout, ping_interval=None,
            close_timeout=CLOSE_TIMEOUT, max_size=MAX_MESSAGE,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        await _refuse(scope, send, status if status >= 400 else 502, 1011,
                      f"upstream {_label(target)} refused the websocket: HTTP {status}",
                      body=bytes(exc.response.body))
        return
    except (OSError, TimeoutError) as exc:
        status = 504 if isinstance(exc, TimeoutError) else 502
        await _refuse(scope, send, status, 1013,
                      f"upstream {_label(target)} unreachable: {exc or 'timed out'}")
        return
    except (InvalidHandshake, InvalidURI) as exc:
        await _refuse(scope, send, 502, 1011, f"upstream {_label(target)} handshake failed: {exc}")
        return

    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol,
                    "headers": _accept_headers(upstream)})
        await _pump_both(receive, send, upstream)
    finally:
        with contextlib.suppress(Exception):
            await upstream.close()


def _label(target: UpstreamTarget) -> str:
    return repr(target.name) if target.name else f"{target.host}:{target.port}"


def _upstream_uri(scope: Scope, target: UpstreamTarget) -> str:
    path = encode_path(target.path).decode("ascii")
    if target.query:
        path += "?" + target.query.decode("latin-1")
    host = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"host"), "")
    # The Host is client-controlled and becomes part of a URI: anything but a plain
    # name/IP[:port] (a "/" would move the path, "user@" would add credentials) is not used.
    if not _PLAIN_HOST.fullmatch(host):
        host = f"{target.host}:{target.port}"
    return f"ws://{host}{path}"


def _accept_headers(upstream: ClientConnection) -> list[tuple[bytes, bytes]]:
    """Upstream handshake headers worth passing on (cookies, app headers)."""
    response = upstream.response
    if response is None:
        return []
    out = []
    for name, value in response.headers.raw_items():
        lname = name.lower()
        if (lname.encode() in HOP_BY_HOP or lname.startswith("sec-websocket-")
                or lname in _SKIP_RESPONSE_HEADERS):
            continue
        out.append((lname.encode("latin-1"), value.encode("latin-1")))
    return out


async def _refuse(scope: Scope, send: Send, status: int, code: int, detail: str, *,
                  body: bytes = b"") -> None:
    if "websocket.http.response" in (scope.get("extensions") or {}):
        payload = body or (detail + "\n").encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "websocket.http.response.body", "body": payload})
        return
    # Without the extension a pre-accept close becomes a bare 403; accepting first lets the
    # client see a close code that says why.
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code,
                "reason": detail.encode()[:123].decode("utf-8", "ignore")})


async def _pump_both(receive: Receive, send: Send, upstream: ClientConnection) -> None:
    client_left = False

    async def client_to_upstream() -> None:
        nonlocal client_left
        while True:
            msg = await receive()
            kind = msg["type"]
            if kind == "websocket.receive":
                text = msg.get("text")
                await upstream.send(text if text is not None else (msg.get("bytes") or b""))
            elif kind == "websocket.disconnect":
                client_left = True
                await upstream.close(_sendable(msg.get("code", 1000)), msg.get("reason") or "")
                return

    async def upstream_to_client() -> None:
        try:
            while True:
                data: Any = await upstream.recv()
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed as exc:
            if client_left:
                return  # this is the echo of the client's own close
            rcvd = exc.rcvd
            code = _sendable(rcvd.code) if rcvd is not None else 1011
            reason = rcvd.reason if rcvd is not None else "upstream connection lost"
            await send({"type": "websocket.close", "code": code, "reason": reason})

    tasks = [asyncio.ensure_future(client_to_upstream()),
             asyncio.ensure_future(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        # Connection-level failures end the session; anything else is a bug worth seeing.
        if isinstance(result, BaseException) and not isinstance(
            result, (asyncio.CancelledError, ConnectionClosed, OSError)
        ):
            raise result
