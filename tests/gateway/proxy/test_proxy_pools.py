"""PooledTransport keeps one pool per upstream in use, not one per port it ever saw.

Blue/green rollovers and restarts move an app to a new port for good; the pools of the old
ports must not pile up for the life of the gateway.
"""

from __future__ import annotations

import asyncio

from gateway.proxy import PooledTransport, UpstreamTarget
from gateway.proxy.client import UpstreamPool
from tests.support.harness import wait_until
from tests.support.proxy import DEADLINE, AsgiClient, make_scope, ok


async def proxy(transport: PooledTransport, target: UpstreamTarget) -> AsgiClient:
    client = AsgiClient()
    await asyncio.wait_for(
        transport.http(make_scope(), client.receive, client.send, target),  # type: ignore[arg-type]
        DEADLINE,
    )
    assert client.status == 200
    return client


async def test_pools_of_gone_upstreams_are_dropped(start_upstream, transport):
    """Twenty rollovers: each old upstream stops (closing its keep-alive connections) and a
    new port takes over; the transport ends up holding pools for at most two of them."""
    previous = None
    for _ in range(20):
        up = await start_upstream(ok)
        await proxy(transport, up.target())
        await proxy(transport, up.target())  # keep-alive: the second reuses the first socket
        assert transport.stats()[f"127.0.0.1:{up.port}"]["reused"] == 1
        if previous is not None:
            await previous.aclose()
            pool = transport._pools.get(("127.0.0.1", previous.port))
            if pool is not None:
                await wait_until(lambda p=pool: p.open == 0, DEADLINE, interval=0.002)
        assert len(transport.stats()) <= 2, transport
        previous = up
    assert f"127.0.0.1:{previous.port}" in transport.stats()
    assert all(p.busy == 0 for p in transport._pools.values())  # none left in progress


async def test_pools_with_live_connections_are_kept(start_upstream, transport):
    """An upstream that still holds an idle keep-alive connection keeps its pool (and the
    connection) when another upstream appears."""
    first = await start_upstream(ok)
    await proxy(transport, first.target())
    second = await start_upstream(ok)
    await proxy(transport, second.target())
    assert set(transport.stats()) == {f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"}
    await proxy(transport, first.target())
    assert first.connections == 1  # the pooled socket was reused, not reopened


async def test_pool_still_connecting_is_not_pruned(start_upstream, transport, monkeypatch):
    """A request that is still connecting (its pool has no connection yet) keeps its pool
    when another upstream appears meanwhile."""
    gate, connecting = asyncio.Event(), asyncio.Event()
    connect = UpstreamPool.connect
    slow = await start_upstream(ok)

    async def gated_connect(self: UpstreamPool, target: UpstreamTarget):
        if self.port == slow.port:
            connecting.set()
            await gate.wait()
        return await connect(self, target)

    monkeypatch.setattr(UpstreamPool, "connect", gated_connect)
    task = asyncio.create_task(proxy(transport, slow.target()))
    await asyncio.wait_for(connecting.wait(), DEADLINE)
    pool = transport._pools[("127.0.0.1", slow.port)]
    assert pool.open == 0
    other = await start_upstream(ok)
    await proxy(transport, other.target())
    assert transport._pools.get(("127.0.0.1", slow.port)) is pool
    gate.set()
    await task
    assert pool.idle_count == 1 and transport._pools[("127.0.0.1", slow.port)] is pool
