"""Caching extension: what is kept, for how long, per which variant, within what memory."""

from __future__ import annotations

import asyncio
import types

import pytest

from gateway.config.schema import CachingOptions
from gateway.extensions import caching
from gateway.extensions.caching import CachingExtension
from tests.support.extensions import (
    call_asgi,
    default_handler,
    gateway,
    http_scope,
    member,
    response_headers,
)
from tests.support.harness import wait_until

CACHING = '[[extensions]]\ntype = "caching"\n[extensions.config]\ncache_ttl = 3600\n'


async def test_second_get_is_a_hit_and_the_app_saw_one_request(tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (served, upstream, client):
        first = await client.get("/page")
        second = await client.get("/page")
        assert first.headers["x-cache"] == "MISS" and "age" not in first.headers
        assert second.headers["x-cache"] == "HIT"
        assert int(second.headers["age"]) >= 0
        assert second.text == first.text
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert upstream.calls == ["GET /page"]
        # The request log shows the decision.
        log = served.services.request_log
        assert log.find(first.headers["x-request-id"]).cache == "MISS"
        assert log.find(second.headers["x-request-id"]).cache == "HIT"
        stats = member(served, "caching").metrics()
        assert stats["hits"] == 1 and stats["misses"] == 1 and stats["entries"] == 1
        assert stats["bytes"] > len(first.content)


async def test_head_is_served_from_a_cached_get(tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (_, upstream, client):
        got = await client.get("/doc")
        head = await client.head("/doc")
        assert head.status_code == 200 and head.headers["x-cache"] == "HIT"
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        # A HEAD miss goes to the app and stores nothing (it has no body to keep).
        head = await client.head("/other")
        assert head.headers["x-cache"] == "MISS"
        assert (await client.get("/other")).headers["x-cache"] == "MISS"
        assert upstream.calls == ["GET /doc", "HEAD /other", "GET /other"]


async def test_vary_keeps_one_variant_per_header_value(tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (_, upstream, client):
        url = "/v?vary=Accept-Language"
        en = await client.get(url, headers={"Accept-Language": "en"})
        fr = await client.get(url, headers={"Accept-Language": "fr"})
        assert (en.headers["x-cache"], fr.headers["x-cache"]) == ("MISS", "MISS")
        en2 = await client.get(url, headers={"Accept-Language": "en"})
        fr2 = await client.get(url, headers={"Accept-Language": "fr"})
        assert en2.headers["x-cache"] == fr2.headers["x-cache"] == "HIT"
        assert "lang en" in en2.text and "lang fr" in fr2.text
        assert len(upstream.calls) == 2


@pytest.mark.parametrize("query", [
    "cc=no-store", "cc=private,max-age=60", "cc=no-cache", "cc=max-age=0", "vary=*",
    "status=404", "type=text/event-stream",
])
async def test_uncacheable_responses_are_never_stored(tmp_path, monkeypatch, query) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (served, upstream, client):
        for _ in range(3):
            r = await client.get(f"/u?{query}")
            assert r.headers["x-cache"] == "MISS"
        assert len(upstream.calls) == 3
        assert member(served, "caching").metrics()["entries"] == 0


async def test_request_no_store_and_authorization_bypass_the_cache(
        tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (_, upstream, client):
        await client.get("/p")
        r = await client.get("/p", headers={"Cache-Control": "no-store"})
        assert "x-cache" not in r.headers
        r = await client.get("/p", headers={"Authorization": "Bearer x"})
        assert "x-cache" not in r.headers
        assert (await client.get("/p")).headers["x-cache"] == "HIT"
        assert len(upstream.calls) == 3


async def test_only_matching_paths_are_cached(tmp_path, monkeypatch) -> None:
    config = CACHING + 'cache_patterns = ["/api/public/*", "*.css"]\n'
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        for _ in range(2):
            assert "x-cache" not in (await client.get("/api/private/x")).headers
            await client.get("/api/public/deep/x")
            await client.get("/static/site.css")
        assert (await client.get("/api/public/deep/x")).headers["x-cache"] == "HIT"
        assert len(upstream.calls) == 4


async def test_if_none_match_on_a_hit_gives_304(tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (_, upstream, client):
        url = '/e?etag="v1"'
        await client.get(url)
        r = await client.get(url, headers={"If-None-Match": 'W/"v1"'})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == '"v1"' and r.headers["x-cache"] == "HIT"
        assert len(upstream.calls) == 1


def hold_upstream(upstream) -> asyncio.Event:
    """Make every upstream request wait for the returned event, then answer as usual."""
    gate = asyncio.Event()

    async def slow(scope, receive, send):
        await gate.wait()
        await default_handler(scope, receive, send)

    upstream.handler = slow
    return gate


async def test_single_flight_sends_concurrent_misses_to_the_app_once(
        tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (served, upstream, client):
        gate = hold_upstream(upstream)
        cache = member(served, "caching")
        tasks = [asyncio.create_task(client.get("/cold")) for _ in range(5)]
        await wait_until(lambda: len(upstream.calls) == 1 and cache.waiting == 4, 5.0,
                         interval=0.005)
        gate.set()
        responses = await asyncio.gather(*tasks)
        assert [r.status_code for r in responses] == [200] * 5
        assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 4 + ["MISS"]
        assert len({r.text for r in responses}) == 1
        assert upstream.calls == ["GET /cold"]
        assert cache.metrics()["coalesced"] == 4 and cache.metrics()["in_flight"] == 0


async def test_single_flight_followers_fall_back_when_the_leader_cannot_be_cached(
        tmp_path, monkeypatch) -> None:
    async with gateway(CACHING, tmp_path, monkeypatch) as (served, upstream, client):
        gate = hold_upstream(upstream)
        cache = member(served, "caching")
        tasks = [asyncio.create_task(client.get("/nc?cc=no-store")) for _ in range(4)]
        await wait_until(lambda: len(upstream.calls) == 1 and cache.waiting == 3, 5.0,
                         interval=0.005)
        gate.set()
        responses = await asyncio.gather(*tasks)
        assert [r.status_code for r in responses] == [200] * 4
        assert len(upstream.calls) == 4


async def test_single_flight_followers_stop_waiting_after_the_timeout(
        tmp_path, monkeypatch) -> None:
    config = CACHING + "single_flight_timeout = 0.2\n"
    async with gateway(config, tmp_path, monkeypatch) as (served, upstream, client):
        gate = asyncio.Event()

        async def first_is_stuck(scope, receive, send):
            if len(upstream.calls) == 1:
                await gate.wait()
            await default_handler(scope, receive, send)

        upstream.handler = first_is_stuck
        leader = asyncio.create_task(client.get("/stuck"))
        await wait_until(lambda: len(upstream.calls) == 1, 5.0, interval=0.005)
        follower = await client.get("/stuck")
        assert follower.status_code == 200 and len(upstream.calls) == 2
        gate.set()
        assert (await leader).status_code == 200


# --- in-process: TTL, size limits, bounded memory ----------------------------------------

def _app(body: bytes = b"x" * 100, headers: list | None = None, chunks: int = 1):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        extra = list(headers or [])
        if chunks == 1:
            extra.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")] + extra})
        step = max(1, len(body) // chunks)
        for i in range(0, len(body), step):
            await send({"type": "http.response.body", "body": body[i:i + step],
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app, calls


async def test_ttl_and_max_age_expire_entries(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(caching, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    app, calls = _app(headers=[(b"cache-control", b"public, max-age=30")])
    ext = CachingExtension(app, options=CachingOptions(cache_ttl=60), services=None)
    await call_asgi(ext, http_scope("/t"))
    now[0] += 29
    sent, _ = await call_asgi(ext, http_scope("/t"))
    assert response_headers(sent)[b"x-cache"] == b"HIT"
    assert response_headers(sent)[b"age"] == b"29"
    now[0] += 2  # past max-age=30 although cache_ttl is 60
    sent, _ = await call_asgi(ext, http_scope("/t"))
    assert response_headers(sent)[b"x-cache"] == b"MISS"
    assert len(calls) == 2 and ext.store.expired == 1


async def test_large_responses_stream_through_without_being_kept() -> None:
    body = bytes(range(256)) * 40  # 10 KiB
    for chunks in (1, 8):  # with Content-Length, and streamed without one
        app, calls = _app(body=body, chunks=chunks)
        ext = CachingExtension(app, options=CachingOptions(max_entry_bytes=4096),
                               services=None)
        for _ in range(2):
            sent, got = await call_asgi(ext, http_scope("/big"))
            assert got == body
        assert len(calls) == 2 and ext.store.bytes == 0 and not ext.store.entries
    # Streamed bodies reach the client chunk by chunk, not as one buffered copy.
    assert sum(m["type"] == "http.response.body" for m in sent) == 9


async def test_memory_stays_bounded_over_100k_distinct_keys() -> None:
    app, calls = _app(body=b"y" * 300, headers=[(b"vary", b"Accept-Language")])
    options = CachingOptions(max_entries=500, max_bytes=100_000, max_entry_bytes=2048)
    ext = CachingExtension(app, options=options, services=None)
    headers = [(b"accept-language", b"en")]
    for i in range(100_000):
        await call_asgi(ext, http_scope(f"/k/{i}", headers=headers))
        if i % 5000 == 0:
            assert len(ext.store.entries) <= 500 and ext.store.bytes <= 100_000
    stats = ext.metrics()
    assert stats["entries"] <= 500 and stats["bytes"] <= 100_000
    assert len(ext.store.vary) <= 500
    assert stats["evictions"] >= 100_000 - 500
    assert stats["in_flight"] == 0 and not ext._inflight
    assert len(calls) == 100_000
    # The newest keys are still there.
    sent, _ = await call_asgi(ext, http_scope("/k/99999", headers=headers))
    assert response_headers(sent)[b"x-cache"] == b"HIT"


async def test_headers_added_by_outer_extensions_are_not_stored() -> None:
    app, _ = _app()
    ext = CachingExtension(app, options=CachingOptions(), services=None)

    async def outer(scope, receive, send):
        async def tag(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"],
                                      (b"access-control-allow-origin", b"https://a.test")]
            await send(message)

        await ext(scope, receive, tag)

    await call_asgi(outer, http_scope("/o"))
    sent, _ = await call_asgi(ext, http_scope("/o"))
    assert b"access-control-allow-origin" not in response_headers(sent)


async def test_set_cookie_responses_are_not_shared() -> None:
    app, calls = _app(headers=[(b"set-cookie", b"session=1")])
    ext = CachingExtension(app, options=CachingOptions(), services=None)
    await call_asgi(ext, http_scope("/c"))
    await call_asgi(ext, http_scope("/c"))
    assert len(calls) == 2


async def test_websocket_and_lifespan_pass_through() -> None:
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    ext = CachingExtension(app, options=CachingOptions(), services=None)
    await ext({"type": "lifespan"}, None, None)
    await ext({"type": "websocket", "path": "/ws", "headers": []}, None, None)
    assert seen == ["lifespan", "websocket"]
