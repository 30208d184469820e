"""Each backend serves the gateway's app inside the running event loop, on the engine's socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.config.schema import ServerConfig
from gateway.errors import StartupError
from gateway.servers.base import ServingHandle, wait_until
from gateway.servers.listener import create_listener
from gateway.servers.registry import BackendRegistry
from gateway.servers.switch import GatewayServer
from tests.apps.backends import app

BACKENDS = ["builtin", "granian", "uvicorn", "hypercorn"]
EMBEDDED = ["granian", "uvicorn", "hypercorn"]  # the ASGI servers, which can also do TLS


@pytest.fixture
async def listener() -> AsyncIterator[socket.socket]:
    sock = create_listener("127.0.0.1", 0, backlog=128)
    yield sock
    sock.close()


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def serve(name: str, sock: socket.socket,
                settings: ServerConfig | None = None) -> ServingHandle:
    return await BackendRegistry.get(name).serve_gateway(app, sock, settings or ServerConfig())


@pytest.mark.parametrize("name", BACKENDS)
async def test_serves_in_the_running_loop(name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    handle = await serve(name, listener)
    try:
        assert "serving" in repr(handle)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(5):  # the same keep-alive connection
                response = await client.get(f"/n/{i}")
                assert response.status_code == 200
                assert response.text == f"pid={os.getpid()} path=/n/{i}"
            echoed = await client.post("/echo", content=b"x" * 100_000)
            assert echoed.content == b"x" * 100_000
        for _ in range(3):  # new connections
            async with httpx.AsyncClient() as fresh:
                assert (await fresh.get(f"http://127.0.0.1:{port}/")).status_code == 200
    finally:
        await asyncio.wait_for(handle.stop(5), 10)
    assert "stopped" in repr(handle)


@pytest.mark.parametrize("name", BACKENDS)
async def test_does_not_block_the_loop(name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    handle = await serve(name, listener)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(50)))
        assert all(r.status_code == 200 for r in responses)
    finally:
        await handle.stop(5)
        ticking.cancel()
    assert len(gaps) > 3
    assert max(gaps) < 0.5


@pytest.mark.parametrize("name", BACKENDS)
async def test_stop_leaves_the_engine_socket_open(name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    before = open_fds()
    for _ in range(2):  # serve, stop, serve again on the same socket
        handle = await serve(name, listener)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
        await handle.stop(5)
        assert listener.fileno() != -1
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    # The backend's dup of the socket is closed with it; nothing accumulates per serve.
    await wait_until(lambda: len(open_fds() - before) <= 2,
                     deadline=asyncio.get_running_loop().time() + 5)
    assert listener.fileno() not in open_fds() - before
    assert len(open_fds() - before) <= 2  # granian's runtime keeps one socketpair for good


@pytest.mark.parametrize("name", BACKENDS)
async def test_stop_finishes_a_request_in_flight(name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        started.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    handle = await BackendRegistry.get(name).serve_gateway(slow, listener, ServerConfig())
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/"))
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.create_task(handle.stop(5))
        await asyncio.sleep(0.1)
        assert not stopping.done()
        release.set()
        response = await asyncio.wait_for(request, 5)
        await asyncio.wait_for(stopping, 10)
    assert response.text == "finished"
    assert response.headers.get("connection") == "close"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


@pytest.mark.parametrize("name", EMBEDDED)
async def test_serves_tls(name: str, listener: socket.socket,
                          certificate: tuple[str, str]) -> None:
    port = listener.getsockname()[1]
    cert, key = certificate
    handle = await serve(name, listener, ServerConfig(ssl_certfile=cert, ssl_keyfile=key))
    try:
        trust = ssl.create_default_context(cafile=cert)
        async with httpx.AsyncClient(verify=trust) as client:
            response = await client.get(f"https://127.0.0.1:{port}/tls")
        assert response.status_code == 200
        assert response.text.endswith("path=/tls")
    finally:
        await handle.stop(5)


@pytest.mark.parametrize("name", ["granian", "hypercorn"])
async def test_serves_http2_when_asked(name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    handle = await serve(name, listener, ServerConfig(http="2"))
    try:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            responses = [await client.get(f"http://127.0.0.1:{port}/h2/{i}") for i in range(3)]
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert all(r.status_code == 200 for r in responses)
    finally:
        await handle.stop(5)


@pytest.mark.parametrize(("config", "key"), [
    (ServerConfig(ssl_certfile="cert.pem", ssl_keyfile="key.pem"), "ssl_certfile"),
    (ServerConfig(http="2"), "http"),
])
def test_the_builtin_front_refuses_tls_and_http2_and_auto_falls_back(
        config: ServerConfig, key: str) -> None:
    """The front serves plain HTTP/1.1: named explicitly with TLS or HTTP/2 it is a clear
    error; `auto` then serves the gateway on granian instead."""
    with pytest.raises(StartupError, match=rf"built-in front .* cannot honour {key}"):
        BackendRegistry.resolve_gateway("builtin", config)
    assert BackendRegistry.resolve_gateway("auto", config) == "granian"
    assert BackendRegistry.resolve_gateway("auto", ServerConfig()) == "builtin"
    assert BackendRegistry.resolve("auto") == BackendRegistry.resolve("builtin") == "granian"


@pytest.mark.parametrize("name", EMBEDDED)
async def test_a_backend_that_cannot_start_is_a_startup_error(name: str) -> None:
    server = GatewayServer()
    settings = ServerConfig(host="127.0.0.1", port=0, ssl_certfile="/nonexistent/cert.pem",
                            ssl_keyfile="/nonexistent/key.pem")
    with pytest.raises(StartupError, match=f"^{name} could not start serving: "):
        await server.start(app, name, settings)
    assert not server.running
    assert repr(server) == "<GatewayServer stopped>"


@pytest.mark.parametrize("name", BACKENDS)
async def test_stop_ends_requests_that_outlive_the_graceful_timeout(
        name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    started = asyncio.Event()

    async def hangs(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            started.set()
            await asyncio.Event().wait()

    threads_before = len(os.listdir("/proc/self/task"))
    handle = await BackendRegistry.get(name).serve_gateway(hangs, listener, ServerConfig())
    assert handle.serving
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=10) as client:
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/"))
        await asyncio.wait_for(started.wait(), 5)
        began = loop.time()
        await asyncio.wait_for(handle.stop(0.5), 10)
        assert loop.time() - began < 3
        try:
            response = await asyncio.wait_for(request, 5)
            assert response.status_code == 500
        except httpx.TransportError:
            pass  # dropping the connection is also an answer; hanging is not
    assert not handle.serving
    assert await wait_until(lambda: len(os.listdir("/proc/self/task")) <= threads_before,
                            deadline=loop.time() + 5)
