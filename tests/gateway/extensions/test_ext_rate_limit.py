"""Rate limiting: token buckets per real client, 429 with Retry-After, bounded table."""

from __future__ import annotations

from gateway.config.schema import RateLimitOptions
from gateway.extensions.rate_limit import RateLimitExtension, TokenBuckets
from tests.support.extensions import call_asgi, gateway, http_scope, member

RATE = ('[[extensions]]\ntype = "rate_limit"\n[extensions.config]\n'
        'requests_per_minute = 6\nburst_size = 3\n')


def test_token_bucket_refills_at_the_configured_rate() -> None:
    buckets = TokenBuckets(per_minute=60, capacity=2, max_keys=10)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == 1.0  # one token per second: a second to wait
    assert buckets.take("a", 0.25) == 0.75
    assert buckets.take("a", 1.0) == 0.0  # refilled one token, the failed tries cost nothing
    assert buckets.take("b", 1.0) == 0.0  # clients do not share a bucket
    assert buckets.take("a", 100.0) == 0.0 and buckets.take("a", 100.0) == 0.0
    assert buckets.take("a", 100.0) > 0  # the bucket never holds more than the burst


async def test_429_after_the_burst_with_retry_after(tmp_path, monkeypatch) -> None:
    async with gateway(RATE, tmp_path, monkeypatch) as (served, upstream, client):
        statuses = [(await client.get("/")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        r = await client.get("/", headers={"X-Request-ID": "req-429"})
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 10  # 6/min: a token every 10 s
        assert "req-429" in r.text
        assert len(upstream.calls) == 3
        assert member(served, "rate_limit").metrics() == {
            "limited": 1, "allowed": 3, "clients": 1, "evicted": 0}
        # A spoofed X-Forwarded-For does not buy a fresh bucket.
        r = await client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 429


async def test_trusted_proxy_forwarded_clients_get_their_own_buckets(
        tmp_path, monkeypatch) -> None:
    config = RATE + 'trusted_proxies = ["127.0.0.1"]\n'
    async with gateway(config, tmp_path, monkeypatch) as (served, upstream, client):
        for _ in range(3):
            assert (await client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
                    ).status_code == 200
        assert (await client.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
                ).status_code == 429
        assert (await client.get("/", headers={"X-Forwarded-For": "198.51.100.2"})
                ).status_code == 200
        assert member(served, "rate_limit").metrics()["clients"] == 2


async def test_client_table_stays_bounded() -> None:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    ext = RateLimitExtension(app, options=RateLimitOptions(max_clients=100), services=None)
    for i in range(20_000):
        sent, _ = await call_asgi(ext, http_scope(client=(f"10.{i >> 16 & 255}.{i >> 8 & 255}."
                                                          f"{i & 255}", 1000)))
        assert sent[0]["status"] == 204
    stats = ext.metrics()
    assert stats["clients"] == 100 and stats["evicted"] == 19_900
    assert stats["allowed"] == 20_000 and stats["limited"] == 0


async def test_websockets_are_limited_too() -> None:
    async def app(scope, receive, send):
        await send({"type": "websocket.accept"})

    ext = RateLimitExtension(app, options=RateLimitOptions(burst_size=1), services=None)
    scope = http_scope()
    scope["type"] = "websocket"
    sent, _ = await call_asgi(ext, scope)
    assert sent[0]["type"] == "websocket.accept"
    sent, _ = await call_asgi(ext, dict(scope))
    assert sent[0] == {"type": "websocket.close", "code": 1008,
                       "reason": "rate limit exceeded, retry later"}
