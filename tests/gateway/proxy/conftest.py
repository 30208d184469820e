"""Fixtures for the proxy tests; the helpers they build on live in ``proxy_harness``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.proxy import PooledTransport
from tests.support.proxy import Respond, Upstream


@pytest.fixture
async def start_upstream() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    started: list[Upstream] = []

    async def start(respond: Respond | None = None, **kw: Any) -> Upstream:
        up = Upstream(respond, **kw)
        up.server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
        up.port = up.server.sockets[0].getsockname()[1]
        started.append(up)
        return up

    yield start
    for up in started:
        await up.aclose()


@pytest.fixture
async def transport() -> AsyncIterator[PooledTransport]:
    t = PooledTransport()
    yield t
    await t.aclose()
