"""Response compression: gzip always, brotli and zstd when their packages are installed.

The encoding is the client's best-rated one by ``Accept-Encoding`` q-values (ties go to br,
then zstd, then gzip). A response is compressed only when it is worth it and safe: at least
``minimum_size`` bytes (by ``Content-Length``, or, for a body streamed without one, once its
first chunks reach that size), not already encoded, not a partial (206) answer, not an event
stream, not a type that is compressed already (images, audio, video, archives, woff2) and not
marked ``no-transform``.

Streaming still streams: a body without ``Content-Length`` is flushed after every chunk the
app sends, so each chunk reaches the client as soon as the app produced it. A body with a
known length is compressed without per-chunk flushes, for the better ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from gateway.config.schema import CompressionOptions
from gateway.extensions._http import add_vary, header_value, parse_qlist
from gateway.extensions.base import Extension
from gateway.routing.staticfiles import PATHSEND
from gateway.services import Services
from gateway.types import ASGIApp, Headers, Message, Receive, Scope, Send


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...


class GzipEncoder:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


ENCODERS: dict[str, Callable[[int], Encoder]] = {"gzip": GzipEncoder}

try:
    import brotli
except ImportError:  # optional: pip install pyserve-tui[compression]
    pass
else:
    class BrotliEncoder:
        __slots__ = ("_b",)

        def __init__(self, level: int) -> None:
            # A 256 KiB window keeps per-response memory small at on-the-fly qualities.
            self._b = brotli.Compressor(quality=level, lgwin=18)

        def compress(self, data: bytes) -> bytes:
            return self._b.process(data)

        def flush(self) -> bytes:
            return self._b.flush()

        def finish(self) -> bytes:
            return self._b.finish()

    ENCODERS["br"] = BrotliEncoder

try:
    import zstandard
except ImportError:  # optional: pip install pyserve-tui[compression]
    pass
else:
    class ZstdEncoder:
        __slots__ = ("_z",)

        def __init__(self, level: int) -> None:
            self._z = zstandard.ZstdCompressor(level=level).compressobj()

        def compress(self, data: bytes) -> bytes:
            return self._z.compress(data)

        def flush(self) -> bytes:
            return self._z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

        def finish(self) -> bytes:
            return self._z.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)

    ENCODERS["zstd"] = ZstdEncoder

PREFERENCE = tuple(e for e in ("br", "zstd", "gzip") if e in ENCODERS)

# Formats that are compressed already: a second pass costs CPU and saves nothing.
_SKIP_PREFIXES = (b"image/", b"video/", b"audio/", b"font/woff")
_SKIP_TYPES = frozenset((
    b"text/event-stream", b"application/zip", b"application/gzip", b"application/x-gzip",
    b"application/x-bzip2", b"application/x-xz", b"application/zstd",
    b"application/x-7z-compressed", b"application/vnd.rar", b"application/x-rar-compressed",
    b"application/octet-stream", b"application/x-brotli", b"application/pdf",
))
_TEXTUAL_IMAGES = frozenset((b"image/svg+xml", b"image/x-icon", b"image/bmp"))


@lru_cache(maxsize=256)
def choose_encoding(accept_encoding: bytes) -> str | None:
    """The encoding to use for this ``Accept-Encoding`` value (cached: clients repeat it)."""
    q = parse_qlist(accept_encoding)
    if "x-gzip" in q and "gzip" not in q:
        q["gzip"] = q["x-gzip"]
    star = q.get("*", 0.0)
    best, best_q = None, 0.0
    for name in PREFERENCE:
        value = q.get(name, star)
        if value > best_q:
            best, best_q = name, value
    return best


def compressible(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    mime = content_type.partition(b";")[0].strip().lower()
    if mime in _TEXTUAL_IMAGES:
        return True
    return not (mime in _SKIP_TYPES or mime.startswith(_SKIP_PREFIXES))


class CompressionExtension(Extension):
    name = "compression"
    Options = CompressionOptions

    def __init__(self, app: ASGIApp, *, options: CompressionOptions,
                 services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.minimum_size = max(0, options.minimum_size)
        self.level = options.compression_level
        self.compressed: dict[str, int] = dict.fromkeys(PREFERENCE, 0)
        self.skipped = 0
        self.bytes_in = 0
        self.bytes_out = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept = header_value(scope["headers"], b"accept-encoding")
        encoding = choose_encoding(accept) if accept else None
        extensions = scope.get("extensions")
        if encoding is not None and extensions and PATHSEND in extensions:
            # A file handed to the server by path would bypass the encoder (the headers
            # would say gzip over the raw bytes): this response streams its body instead.
            scope = {**scope, "extensions": {k: v for k, v in extensions.items()
                                             if k != PATHSEND}}
        response = CompressedResponse(self, send, encoding, scope["method"] == "HEAD")
        await self.app(scope, receive, response.send)

    def metrics(self) -> dict[str, Any]:
        return {"compressed": sum(self.compressed.values()), "skipped": self.skipped,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "by_encoding": dict(self.compressed)}

    def __repr__(self) -> str:
        return (f"<CompressionExtension encodings={list(PREFERENCE)} "
                f"min={self.minimum_size} level={self.level} "
                f"compressed={sum(self.compressed.values())}>")


class CompressedResponse:
    """One response on its way out: passes through, or buffers a little, or compresses."""

    __slots__ = ("ext", "_send", "encoding", "head", "start", "buffer", "buffered",
                 "encoder", "flush_each")

    def __init__(self, ext: CompressionExtension, send: Send, encoding: str | None,
                 head: bool) -> None:
        self.ext = ext
        self._send = send
        self.encoding = encoding
        self.head = head
        self.start: Message | None = None  # held while deciding on a length-less body
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.encoder: Encoder | None = None
        self.flush_each = False

    async def send(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "http.response.start":
            await self._on_start(message)
        elif mtype != "http.response.body":
            await self._send(message)
        elif self.encoder is not None:
            await self._compress(message)
        elif self.start is not None:
            await self._collect(message)
        else:
            await self._send(message)

    async def _on_start(self, message: Message) -> None:
        headers: Headers = list(message.get("headers") or ())
        status = message["status"]
        if (status < 200 or status in (204, 206, 304)
                or header_value(headers, b"content-encoding") is not None
                or not compressible(header_value(headers, b"content-type"))
                or b"no-transform" in (header_value(headers, b"cache-control") or b"")):
            await self._send(message)
            return
        add_vary(headers, b"Accept-Encoding")  # the answer depends on it, used or not
        message["headers"] = headers
        length = header_value(headers, b"content-length")
        size = int(length) if length is not None and length.isdigit() else None
        if self.encoding is None or (size is not None and size < self.ext.minimum_size):
            self.ext.skipped += 1
            await self._send(message)
        elif self.head:
            if size is None:
                await self._send(message)
            else:
                await self._send(self._encoded_start(message))
        elif size is not None:
            await self._begin(message, flush_each=False)
        else:
            self.start = message  # stream of unknown length: wait for minimum_size bytes

    def _encoded_start(self, message: Message) -> Message:
        assert self.encoding is not None
        headers = []
        for name, value in message["headers"]:
            if name == b"content-length" or name == b"accept-ranges":
                continue
            if name == b"etag" and not value.startswith(b"W/"):
                value = b"W/" + value  # the bytes differ from the identity representation
            headers.append((name, value))
        headers.append((b"content-encoding", self.encoding.encode()))
        return {**message, "headers": headers}

    async def _begin(self, message: Message, *, flush_each: bool) -> None:
        assert self.encoding is not None
        self.encoder = ENCODERS[self.encoding](self.ext.level)
        self.flush_each = flush_each
        self.ext.compressed[self.encoding] += 1
        await self._send(self._encoded_start(message))

    async def _collect(self, message: Message) -> None:
        assert self.start is not None
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if body:
            self.buffer.append(body)
            self.buffered += len(body)
        if self.buffered >= self.ext.minimum_size:
            start, self.start = self.start, None
            await self._begin(start, flush_each=True)
            data, self.buffer = b"".join(self.buffer), []
            await self._compress({"type": "http.response.body", "body": data,
                                  "more_body": more})
        elif not more:
            start, self.start = self.start, None
            self.ext.skipped += 1
            data, self.buffer = b"".join(self.buffer), []
            start["headers"].append((b"content-length", str(len(data)).encode()))
            await self._send(start)
            await self._send({"type": "http.response.body", "body": data})

    async def _compress(self, message: Message) -> None:
        assert self.encoder is not None
        body = message.get("body", b"")
        more = message.get("more_body", False)
        out = self.encoder.compress(body) if body else b""
        self.ext.bytes_in += len(body)
        if more:
            if self.flush_each and body:
                out += self.encoder.flush()
            if not out:
                return
        else:
            out += self.encoder.finish()
        self.ext.bytes_out += len(out)
        await self._send({"type": "http.response.body", "body": out, "more_body": more})

    def __repr__(self) -> str:
        state = "compressing" if self.encoder else "buffering" if self.start else "passing"
        return f"<CompressedResponse {self.encoding} {state} buffered={self.buffered}>"
