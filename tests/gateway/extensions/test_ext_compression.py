"""Compression: when it applies, that it round-trips, and that streams still stream."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from gateway.config.schema import CompressionOptions
from gateway.extensions.compression import PREFERENCE, CompressionExtension, choose_encoding
from tests.support.extensions import call_asgi, gateway, http_scope, member, response_headers

COMPRESSION = '[[extensions]]\ntype = "compression"\n'
GZIP = {"Accept-Encoding": "gzip"}


async def _raw(client, url: str, headers: dict[str, str], method: str = "GET"):
    async with client.stream(method, url, headers=headers) as r:
        body = b"".join([chunk async for chunk in r.aiter_raw()])
        return r, body


# The best encoding other than gzip, when brotli or zstandard is installed.
OTHER = next((e for e in PREFERENCE if e != "gzip"), None)


@pytest.mark.parametrize(("accept", "expected"), [
    (b"gzip", "gzip"), (b"gzip;q=0", None), (b"identity", None), (b"deflate", None),
    (b"x-gzip", "gzip"), (b"GZIP ; q=0.5", "gzip"), (b"gzip;q=bogus", None),
    (b"br;q=0.5, gzip;q=0.8", "gzip"), (b"*;q=0.1", PREFERENCE[0]), (b"*, gzip;q=0", OTHER),
])
def test_accept_encoding_q_values(accept: bytes, expected: str | None) -> None:
    assert choose_encoding(accept) == expected


async def test_gzip_only_above_minimum_size_and_round_trips(tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (served, upstream, client):
        r, body = await _raw(client, "/small?size=1000", GZIP)
        assert "content-encoding" not in r.headers and len(body) == 1000
        assert r.headers["content-length"] == "1000"
        assert "Accept-Encoding" in r.headers["vary"]
        r, body = await _raw(client, "/big?size=1024", GZIP)
        assert r.headers["content-encoding"] == "gzip"
        # The identity length is gone; a server that has the whole body may state its own.
        assert r.headers.get("content-length") in (None, str(len(body)))
        assert r.headers["vary"] == "Accept-Encoding"
        assert zlib.decompress(body, 31) == b"x" * 1024 and len(body) < 1024
        # Without Accept-Encoding: identity, but still Vary so caches keep both apart.
        r, body = await _raw(client, "/big?size=5000", {"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers and body == b"x" * 5000
        assert r.headers["vary"] == "Accept-Encoding"
        stats = member(served, "compression").metrics()
        assert stats["compressed"] == 1 and stats["bytes_in"] == 1024
        assert 0 < stats["bytes_out"] < 1024


async def test_streamed_bodies_without_length_decide_on_the_first_chunks(
        tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        r, body = await _raw(client, "/s?size=800&stream=1&chunks=4", GZIP)
        assert "content-encoding" not in r.headers and body == b"x" * 800
        r, body = await _raw(client, "/s?size=8000&stream=1&chunks=16", GZIP)
        assert r.headers["content-encoding"] == "gzip"
        assert zlib.decompress(body, 31) == b"x" * 8000


@pytest.mark.parametrize("query", [
    "type=image/png", "type=application/zip", "type=font/woff2", "type=video/mp4",
    "type=application/gzip", "status=204",
])
async def test_never_for_compressed_types(tmp_path, monkeypatch, query) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        r, body = await _raw(client, f"/f?size=5000&{query}", GZIP)
        assert "content-encoding" not in r.headers


async def test_svg_is_compressed_but_encoded_responses_are_left_alone(
        tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        r, _ = await _raw(client, "/i.svg?size=5000&type=image/svg%2Bxml", GZIP)
        assert r.headers["content-encoding"] == "gzip"
        payload = zlib.compress(b"z" * 5000)

        async def encoded(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/plain"), (b"content-encoding", b"deflate"),
                (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})

        upstream.handler = encoded
        r, body = await _raw(client, "/pre", GZIP)
        assert r.headers["content-encoding"] == "deflate" and body == payload


async def test_head_gets_the_headers_a_get_would(tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        r, body = await _raw(client, '/h?size=5000&etag="abc"', GZIP, method="HEAD")
        assert r.headers["content-encoding"] == "gzip" and body == b""
        assert "content-length" not in r.headers
        assert r.headers["etag"] == 'W/"abc"'  # the gzip bytes are another representation


async def test_event_stream_is_not_compressed_and_still_streams(tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        gate = asyncio.Event()

        async def sse(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
            await send({"type": "http.response.body", "body": b"data: first\n\n",
                        "more_body": True})
            await gate.wait()
            await send({"type": "http.response.body", "body": b"data: second\n\n"})

        upstream.handler = sse
        async with asyncio.timeout(5), client.stream("GET", "/events", headers=GZIP) as r:
            assert "content-encoding" not in r.headers
            chunks = r.aiter_raw()
            first = await anext(chunks)
            assert first == b"data: first\n\n"  # arrived while the stream is still open
            gate.set()
            rest = b"".join([c async for c in chunks])
            assert rest == b"data: second\n\n"


async def test_compressed_streams_flush_every_chunk(tmp_path, monkeypatch) -> None:
    async with gateway(COMPRESSION, tmp_path, monkeypatch) as (_, upstream, client):
        gate = asyncio.Event()
        part1 = b"".join(b'{"row": %d}\n' % i for i in range(200))
        part2 = b'{"row": "last"}\n'

        async def ndjson(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-ndjson")]})
            await send({"type": "http.response.body", "body": part1, "more_body": True})
            await gate.wait()
            await send({"type": "http.response.body", "body": part2})

        upstream.handler = ndjson
        async with asyncio.timeout(5), client.stream("GET", "/rows", headers=GZIP) as r:
            assert r.headers["content-encoding"] == "gzip"
            decoder = zlib.decompressobj(31)
            seen = b""
            chunks = r.aiter_raw()
            while len(seen) < len(part1):  # bounded by the timeout above
                seen += decoder.decompress(await anext(chunks))
            assert seen == part1
            gate.set()
            async for chunk in chunks:
                seen += decoder.decompress(chunk)
            assert seen + decoder.flush() == part1 + part2 and decoder.eof


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_optional_encodings_round_trip(encoding: str) -> None:
    module = pytest.importorskip({"br": "brotli", "zstd": "zstandard"}[encoding])
    body = b"hello compression " * 500

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        for i in range(0, len(body), 1000):
            await send({"type": "http.response.body", "body": body[i:i + 1000],
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    ext = CompressionExtension(app, options=CompressionOptions(), services=None)
    scope = http_scope(headers=[(b"accept-encoding", f"gzip;q=0.5, {encoding}".encode())])
    sent, raw = await call_asgi(ext, scope)
    assert response_headers(sent)[b"content-encoding"] == encoding.encode()
    if encoding == "br":
        assert module.decompress(raw) == body
    else:
        assert module.ZstdDecompressor().decompressobj().decompress(raw) == body


async def test_other_scopes_pass_through() -> None:
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    ext = CompressionExtension(app, options=CompressionOptions(), services=None)
    await ext({"type": "websocket", "headers": []}, None, None)
    await ext({"type": "lifespan"}, None, None)
    assert seen == ["websocket", "lifespan"]
