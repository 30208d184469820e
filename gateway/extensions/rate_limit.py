"""Token-bucket rate limiting per client address.

Each client has a bucket of ``burst_size`` tokens refilled at ``requests_per_minute / 60``
per second; a request takes one token or is answered 429 with ``Retry-After`` set to the
seconds until the next token. The client is the real peer, or the address a trusted proxy
forwarded for (the same resolution as `security`), so a spoofed ``X-Forwarded-For`` cannot
buy a fresh bucket.

Memory is bounded by ``max_clients``: buckets live in an LRU, and when it is full the client
seen least recently is forgotten. That client has been idle longest, so its bucket has
usually refilled already and forgetting it gives nothing away.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from gateway.config.schema import RateLimitOptions
from gateway.context import get_context
from gateway.extensions._client import ClientResolver
from gateway.extensions._http import refuse
from gateway.extensions.base import Extension
from gateway.services import Services
from gateway.types import ASGIApp, Receive, Scope, Send


class TokenBuckets:
    """Per-key token buckets in a bounded LRU; time is passed in so tests need no clock."""

    __slots__ = ("rate", "capacity", "max_keys", "buckets", "evicted")

    def __init__(self, per_minute: float, capacity: int, max_keys: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(capacity)
        self.max_keys = max(1, max_keys)
        # key -> [tokens, last refill time]; a two-item list is updated in place.
        self.buckets: OrderedDict[str, list[float]] = OrderedDict()
        self.evicted = 0

    def take(self, key: str, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self.buckets.popitem(last=False)
                self.evicted += 1
            bucket = self.buckets[key] = [self.capacity, now]
        else:
            self.buckets.move_to_end(key)
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            bucket[0] = tokens if tokens < self.capacity else self.capacity
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` could take a token (0.0: now), taking none."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def give_back(self, key: str) -> None:
        """Return a token taken for something that turned out not to count."""
        bucket = self.buckets.get(key)
        if bucket is not None:
            bucket[0] = min(self.capacity, bucket[0] + 1.0)

    def __len__(self) -> int:
        return len(self.buckets)

    def __repr__(self) -> str:
        return (f"<TokenBuckets {len(self.buckets)}/{self.max_keys} clients "
                f"rate={self.rate:.3g}/s burst={self.capacity:g}>")


class RateLimitExtension(Extension):
    name = "rate_limit"
    Options = RateLimitOptions

    def __init__(self, app: ASGIApp, *, options: RateLimitOptions,
                 services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.buckets = TokenBuckets(options.requests_per_minute, options.burst_size,
                                    options.max_clients)
        self.resolver = ClientResolver(options.trusted_proxies)
        self.limited = 0
        self.allowed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        client = self.resolver.resolve(scope)
        wait = self.buckets.take(client.text, time.monotonic())
        if wait:
            self.limited += 1
            ctx = get_context(scope)
            if ctx is not None:
                ctx.notes["rate_limit"] = f"client {client.text or 'unknown'} over the limit"
            await refuse(scope, send, 429, "rate limit exceeded, retry later",
                         retry_after=wait)
            return
        self.allowed += 1
        await self.app(scope, receive, send)

    def metrics(self) -> dict[str, Any]:
        return {"limited": self.limited, "allowed": self.allowed,
                "clients": len(self.buckets), "evicted": self.buckets.evicted}

    def __repr__(self) -> str:
        return (f"<RateLimitExtension {self.buckets!r} limited={self.limited} "
                f"resolver={self.resolver!r}>")
