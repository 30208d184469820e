"""A stand-in upstream for extension tests: the last member of the pipeline, answering itself.

Its default answer is shaped by the query string so one config serves many tests:
``cc=`` Cache-Control, ``vary=`` Vary, ``type=`` Content-Type, ``size=N`` an N-byte body,
``stream=1`` no Content-Length (the body in ``chunks=K`` pieces), ``status=``, ``etag=``.
Tests that need something else set ``upstream.handler``. ``calls`` counts what reached it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from gateway.extensions import registry
from gateway.extensions.base import Extension
from tests.support.harness import ServedGateway, serve_config

Handler = Callable[[Any, Any, Any], Awaitable[None]]
UPSTREAM = '[[extensions]]\ntype = "test_upstream"\n'


def query(scope: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


async def default_handler(scope: Any, receive: Any, send: Any) -> None:
    q = query(scope)
    n = len(UpstreamApp.instance.calls) if UpstreamApp.instance else 0
    lang = dict(scope["headers"]).get(b"accept-language", b"-").decode()
    size = int(q.get("size", "0"))
    body = (b"x" * size) if size else f"{scope['path']} call {n} lang {lang}\n".encode()
    headers = [(b"content-type", q.get("type", "text/plain; charset=utf-8").encode())]
    for key, name in (("cc", b"cache-control"), ("vary", b"vary"), ("etag", b"etag")):
        if key in q:
            headers.append((name, q[key].encode()))
    status = int(q.get("status", "200"))
    if q.get("stream"):
        pieces = int(q.get("chunks", "4"))
        step = max(1, len(body) // pieces)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i in range(0, len(body), step):
            await send({"type": "http.response.body", "body": body[i:i + step],
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else body})


class UpstreamApp(Extension):
    name = "test_upstream"
    Options = dict
    instance: UpstreamApp | None = None

    def __init__(self, app: Any, *, options: Any, services: Any) -> None:
        super().__init__(app, options=options, services=services)
        self.calls: list[str] = []
        self.handler: Handler = default_handler
        UpstreamApp.instance = self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.calls.append(f"{scope.get('method', 'WS')} {scope['path']}")
        await self.handler(scope, receive, send)


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "test_upstream",
                        f"{UpstreamApp.__module__}:UpstreamApp")


@contextlib.asynccontextmanager
async def gateway(extensions: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[ServedGateway, UpstreamApp, httpx.AsyncClient]]:
    """Serve `extensions` (TOML) followed by the test upstream; yield it, upstream, client."""
    register(monkeypatch)
    async with serve_config(extensions + "\n" + UPSTREAM, tmp_path) as served:
        upstream = next(m for m in served.app.pipeline.members if isinstance(m, UpstreamApp))
        async with httpx.AsyncClient(base_url=served.url, trust_env=False,
                                     timeout=10) as client:
            yield served, upstream, client


def member(served: ServedGateway, name: str) -> Any:
    return next(m for m in served.app.pipeline.members if m.name == name)


async def call_asgi(app: Any, scope: dict[str, Any], body: bytes = b""
                    ) -> tuple[list[dict[str, Any]], bytes]:
    """Drive an ASGI app in-process; returns the messages sent and the joined body."""
    sent: list[dict[str, Any]] = []
    events = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def http_scope(path: str = "/", *, method: str = "GET", headers: list[tuple[bytes, bytes]]
               | None = None, client: tuple[str, int] | None = ("127.0.0.1", 5000),
               query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": query, "headers": headers or [], "client": client,
            "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"}}


def response_headers(sent: list[dict[str, Any]]) -> dict[bytes, bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return dict(start["headers"])
