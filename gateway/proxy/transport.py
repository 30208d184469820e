"""The upstream seam: everything the gateway sends to an app goes through a ``Transport``.

The engine holds one transport and calls ``http``/``websocket`` with an :class:`UpstreamTarget`
its router computed. Tests and extensions can swap in their own object with the same three
methods (httpx's ``BaseTransport`` idea), e.g. one that answers from memory.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from gateway.proxy.client import UpstreamPool
from gateway.proxy.headers import Forwarding
from gateway.proxy.http import forward_http
from gateway.types import Receive, Scope, Send


class UpstreamTarget(NamedTuple):
    """Where and how to send one request (a named tuple: one is made per proxied request,
    and a frozen dataclass costs several times as much to create).

    ``path`` goes on the request line: characters HTTP forbids there (space, non-ASCII) are
    percent-encoded, ``%`` is kept, so a raw path (from ``scope["raw_path"]``) is preserved
    exactly and a decoded one (``scope["path"]``) still produces a valid request.
    """

    host: str
    port: int
    path: str
    query: bytes = b""
    timeout: float = 60.0  # max wait for the response head, and max idle gap in the body
    name: str = ""  # app name or label, for error messages
    scheme: str = "http"
    #: Set for an orchestrated app: its stripped mount path (sent as X-Forwarded-Prefix),
    #: "" when nothing is stripped. None (routing's proxy_pass) sends no prefix and leaves
    #: Location headers alone; for an app, a Location naming its own address is made
    #: relative (see `headers.rewrite_location`).
    prefix: str | None = None


class Transport(Protocol):
    async def http(self, scope: Scope, receive: Receive, send: Send,
                   target: UpstreamTarget) -> None: ...

    async def websocket(self, scope: Scope, receive: Receive, send: Send,
                        target: UpstreamTarget) -> None: ...

    async def aclose(self) -> None: ...


class PooledTransport:
    """The default transport: keep-alive HTTP/1.1 pools, one per ``(host, port)``.

    Pools are created on first use and kept while they hold connections, so a request
    allocates no client objects; empty ones are pruned when a new upstream appears. All
    connections belong to the event loop that opened them; use one transport per loop.
    """

    def __init__(self, *, max_idle_per_host: int = 512, connect_timeout: float = 5.0,
                 forwarding: Forwarding | None = None) -> None:
        self.max_idle_per_host = max_idle_per_host
        self.connect_timeout = connect_timeout
        #: Whose X-Forwarded-*/Forwarded headers are believed (shared with the engine).
        self.forwarding = forwarding if forwarding is not None else Forwarding()
        self._pools: dict[tuple[str, int], UpstreamPool] = {}
        self._closed = False

    def __repr__(self) -> str:
        pools = ", ".join(repr(p) for p in self._pools.values()) or "no pools"
        state = " closed" if self._closed else ""
        return f"<PooledTransport{state} {pools}>"

    def pool(self, host: str, port: int) -> UpstreamPool:
        """The pool of connections to `host`:`port` (made on first use)."""
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            self._prune()
            pool = self._pools[key] = UpstreamPool(
                host, port, max_idle=self.max_idle_per_host,
                connect_timeout=self.connect_timeout,
            )
        return pool

    def _prune(self) -> None:
        """Forget the pools that have no connection and no request in progress.

        Restarts and blue/green rollovers move an app to a new port for good; without this
        every old port kept its empty pool for the life of the gateway. Pruning whenever a
        new pool is made costs nothing per request and bounds the map by the upstreams in
        use plus those whose last connections are still closing.
        """
        empty = [key for key, pool in self._pools.items()
                 if pool.open <= 0 and not pool.idle_count and not pool.busy]
        for key in empty:
            del self._pools[key]

    async def http(self, scope: Scope, receive: Receive, send: Send,
                   target: UpstreamTarget) -> None:
        """Proxy an HTTP request. Raises ``gateway.errors.Upstream*`` (see ``proxy.http``:
        after the response started, raising is how the client connection gets aborted;
        ``UpstreamConnectError`` always comes before any byte of the response, so a caller
        may try another upstream then)."""
        pool = self.pool(target.host, target.port)
        pool.busy += 1
        try:
            await forward_http(pool, scope, receive, send, target, self.forwarding)
        finally:
            pool.busy -= 1

    async def websocket(self, scope: Scope, receive: Receive, send: Send,
                        target: UpstreamTarget) -> None:
        """Proxy a websocket session; failures close the client socket, never raise."""
        from gateway.proxy.websocket import proxy_websocket  # keeps `websockets` off HTTP paths

        await proxy_websocket(scope, receive, send, target, connect_timeout=self.connect_timeout,
                              forwarding=self.forwarding)

    async def aclose(self) -> None:
        """Close idle connections; busy ones close when their exchange ends."""
        self._closed = True
        for pool in self._pools.values():
            pool.max_idle = 0  # exchanges still running close their connection at the end
            pool.close()

    def stats(self) -> dict[str, Any]:
        """Per-upstream connection counters, keyed ``"host:port"``."""
        return {pool.label: pool.stats() for pool in self._pools.values()}
