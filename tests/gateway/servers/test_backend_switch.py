"""The live backend switch: same socket, new server first, old one drained; no client notices."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.config.schema import ServerConfig
from gateway.errors import BackendNotInstalled, StartupError
from gateway.servers.base import wait_until
from gateway.servers.loops import loop_factory
from gateway.servers.switch import GatewayServer
from tests.apps.backends import app

SETTINGS = ServerConfig(host="127.0.0.1", port=0, graceful_timeout=5, keep_alive_timeout=2)


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayServer]:
    server = GatewayServer()
    yield server
    await server.stop(5)


class ClientLoop:
    """Loops requests until told to stop: one keep-alive client, one new connection each."""

    def __init__(self, port: int, *, max_requests: int = 50_000) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.max_requests = max_requests
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        reuse = httpx.AsyncClient(timeout=10)
        fresh = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        self._tasks = [asyncio.create_task(self._loop(reuse)),
                       asyncio.create_task(self._loop(fresh))]

    async def _loop(self, client: httpx.AsyncClient) -> None:
        async with client:
            while not self._done.is_set() and self.ok + sum(self.failures.values()) < \
                    self.max_requests:
                try:
                    response = await client.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures[type(exc).__name__] += 1
                    continue
                if response.status_code == 200 and response.text.startswith("pid="):
                    self.ok += 1
                else:
                    self.failures[f"status {response.status_code}"] += 1

    async def served_more(self, count: int, timeout: float = 15) -> bool:
        target = self.ok + count
        loop = asyncio.get_running_loop()
        return await wait_until(lambda: self.ok >= target, deadline=loop.time() + timeout)

    async def stop(self) -> None:
        self._done.set()
        await asyncio.gather(*self._tasks)


async def test_start_serves_and_reports(gateway: GatewayServer) -> None:
    await gateway.start(app, "auto", SETTINGS)
    assert gateway.backend == "builtin"  # the gateway's own front, as the settings allow
    assert gateway.port > 0
    assert f"builtin on 127.0.0.1:{gateway.port}" in repr(gateway)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{gateway.port}/")).status_code == 200
    await gateway.stop(5)
    assert gateway.backend is None
    assert repr(gateway) == "<GatewayServer stopped>"


async def test_port_in_use_is_a_startup_error(gateway: GatewayServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ServerConfig(host="127.0.0.1", port=port)
        with pytest.raises(StartupError, match=rf"^127\.0\.0\.1:{port} is already in use$"):
            await gateway.start(app, "uvicorn", settings)
    assert not gateway.running


async def test_failed_switch_keeps_the_old_backend(gateway: GatewayServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await gateway.start(app, "uvicorn", SETTINGS)
    with pytest.raises(BackendNotInstalled):
        await gateway.switch("tornado")
    assert gateway.backend == "uvicorn"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{gateway.port}/")).status_code == 200


async def test_switch_to_the_same_backend_is_a_no_op(gateway: GatewayServer) -> None:
    await gateway.start(app, "hypercorn", SETTINGS)
    assert await gateway.switch("hypercorn") == "hypercorn"
    assert gateway.switches == 0


async def test_switch_cannot_move_the_port(gateway: GatewayServer) -> None:
    await gateway.start(app, "uvicorn", SETTINGS)
    with pytest.raises(StartupError, match="without a restart"):
        await gateway.switch("granian", ServerConfig(host="127.0.0.1", port=1))
    assert gateway.backend == "uvicorn"


async def switch_under_load(sequence: tuple[str, ...]) -> tuple[int, dict[str, int], int]:
    """Serve on sequence[0], switch through the rest while clients loop; (ok, failures,
    switches)."""
    gateway = GatewayServer()
    await gateway.start(app, sequence[0], SETTINGS)
    try:
        clients = ClientLoop(gateway.port)
        clients.start()
        try:
            assert await clients.served_more(200)
            for name in sequence[1:]:
                assert await gateway.switch(name) == name
                assert gateway.backend == name
                assert await clients.served_more(200), f"no progress after switching to {name}"
        finally:
            await clients.stop()
        return clients.ok, dict(clients.failures), gateway.switches
    finally:
        await gateway.stop(5)


async def test_switching_under_load_loses_nothing() -> None:
    ok, failures, switches = await switch_under_load(
        ("builtin", "granian", "uvicorn", "hypercorn", "builtin"))
    assert switches == 4
    assert failures == {}
    assert ok >= 800


def test_switching_under_load_on_uvloop() -> None:
    """The workbench runs on uvloop when it is installed (`event_loop = "auto"`)."""
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        ok, failures, switches = runner.run(switch_under_load(
            ("uvicorn", "builtin", "granian", "builtin", "hypercorn")))
    assert (switches, failures) == (4, {})
    assert ok >= 800
