"""Serving files under a `root` safely: no escapes, validators, ranges, streaming from disk.

Mapping follows nginx's ``root``: the whole normalised request path (`uri.normalise`) is
appended to the root, so ``/assets/app.js`` under ``root = "./site"`` reads
``./site/assets/app.js``.

Safety, in order: the normalised path (no ``.``/``..`` segments left; 400 when it cannot be
normalised), its syntax (`safepath`: no encoded separators, backslashes or controls, no
hidden names), then the real path of the file (symlinks resolved) must lie inside the real
path of the root, then the file is opened without following a last-moment symlink and must
be a regular file. Every file-system call runs in a worker thread, so a slow disk never
stalls the event loop; a whole file goes out with the ASGI ``http.response.pathsend``
extension when the server offers it (granian does), else in 64 KiB chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.context import get_context
from gateway.responses import send_error, send_plain
from gateway.routing.conditional import (
    ByteRange,
    Unsatisfiable,
    http_date,
    if_range_allows,
    make_etag,
    not_modified,
    parse_range,
)
from gateway.routing.mediatypes import content_type
from gateway.routing.safepath import HiddenPath, UnsafePath, safe_segments
from gateway.routing.uri import InvalidURI, escape_uri, request_uri, to_text
from gateway.types import Headers, Receive, Scope, Send

CHUNK_SIZE = 64 * 1024
PATHSEND = "http.response.pathsend"

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Opening a FIFO for reading would block until a writer shows up; non-blocking open returns
# at once and the S_ISREG check then refuses it.
_OPEN_FLAGS |= getattr(os, "O_NONBLOCK", 0)
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"range", b"if-range"})
_ALLOW = [(b"allow", b"GET, HEAD")]


@dataclass(slots=True)
class OpenFile:
    """A file opened for one response. The descriptor belongs to the response that got it."""

    fd: int
    path: str
    size: int
    mtime: int
    etag: str

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Redirect(Exception):
    """A directory was asked for without its trailing slash."""


class _Escape(Exception):
    """The real path lies outside the root (a symlink pointing out). Answered 404 and never
    with the SPA fallback: a refused link is an error, not an app route."""


class StaticFiles:
    """One ``root`` location's file server, configured once per pipeline.

    `exclude_patterns` limits the SPA fallback: a pattern with glob characters (``*?[``) is
    matched against the whole path (``/api/*``, ``*.js``; ``*`` crosses ``/``), a plain one is
    a path prefix (``/api/``), as in pyserve.
    """

    def __init__(self, root: str | Path, *, index_file: str = "index.html",
                 spa_fallback: bool = False, exclude_patterns: list[str] | tuple[str, ...] = (),
                 cache_control: str | None = None, allow_hidden: bool = False,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self.root = os.path.realpath(root)
        # The separator-terminated root, so "/srv/site" does not accept "/srv/site-secrets".
        self._root_prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self.index_file = index_file
        self.spa_fallback = spa_fallback
        self._globs = tuple(p for p in exclude_patterns if any(c in p for c in "*?["))
        self._prefixes = tuple(p for p in exclude_patterns if p not in self._globs)
        self.cache_control = cache_control.encode("latin-1") if cache_control else None
        self.allow_hidden = allow_hidden
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        spa = " spa" if self.spa_fallback else ""
        return f"<StaticFiles root={self.root!r} index={self.index_file!r}{spa}>"

    # --- request handling ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve on its own (as an ASGI app): the request path is normalised here."""
        try:
            uri = request_uri(scope)
        except InvalidURI as exc:
            await send_error(scope, send, 400, str(exc))
            return
        await self.serve(scope, receive, send, uri)

    async def serve(self, scope: Scope, receive: Receive, send: Send, uri: bytes) -> None:
        """Answer the request for `uri`, its normalised path (the routing extension has it)."""
        method = scope["method"]
        head = method == "HEAD"
        if method != "GET" and not head:
            await send_plain(send, 405, "405 Method Not Allowed\n", headers=list(_ALLOW))
            return
        path = to_text(uri)
        try:
            segments = safe_segments(path, scope.get("raw_path"), allow_hidden=self.allow_hidden)
        except UnsafePath as exc:
            _note(scope, f"refused: {exc}")
            await send_error(scope, send, 403)
            return
        except HiddenPath:
            await send_error(scope, send, 404)
            return
        try:
            found = await asyncio.to_thread(self._lookup, segments, path.endswith("/"))
            if found is None and self.spa_fallback and not self.excluded(path):
                found = await asyncio.to_thread(self._lookup, [], True)
        except _Redirect:
            await self._redirect(scope, send, head, uri)
            return
        except _Escape:
            _note(scope, "refused: resolves outside the root")
            await send_error(scope, send, 404)
            return
        if found is None:
            await send_error(scope, send, 404)
            return
        _note(scope, found.path)
        try:
            await self._respond(scope, receive, send, found, head)
        finally:
            found.close()

    def excluded(self, path: str) -> bool:
        """Whether `path` must not get the SPA fallback (an API or asset path that is simply
        missing should be a 404, not the app shell)."""
        if any(path.startswith(p) for p in self._prefixes):
            return True
        return any(fnmatch.fnmatchcase(path, g) for g in self._globs)

    # --- file system (runs in a worker thread) ---------------------------------------------

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self._root_prefix)

    def _lookup(self, segments: list[str], dir_request: bool) -> OpenFile | None:
        """Open the file for `segments`; None when it does not exist or may not be served."""
        real = os.path.realpath(os.path.join(self.root, *segments))
        if not self._inside(real):
            raise _Escape
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode):
            if not dir_request:
                raise _Redirect
            real = os.path.realpath(os.path.join(real, self.index_file))
            if not self._inside(real):
                raise _Escape
        elif dir_request:
            return None  # "file.txt/" is not a file
        return self._open(real)

    @staticmethod
    def _open(real: str) -> OpenFile | None:
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
                os.set_blocking(fd, True)
        except OSError:
            os.close(fd)
            return None
        mtime = int(st.st_mtime)
        return OpenFile(fd, real, st.st_size, mtime, make_etag(st.st_mtime_ns, st.st_size))

    # --- responses -------------------------------------------------------------------------

    async def _redirect(self, scope: Scope, send: Send, head: bool, uri: bytes) -> None:
        """301 to the directory with its slash, as nginx: the normalised path, escaped, plus
        ``/`` and the query. Normalised, it starts with exactly one ``/`` and any backslash
        is escaped, so the target is always a path on this host (``//sub`` goes to ``/sub/``,
        never to a host named ``sub``)."""
        location = escape_uri(uri).encode("ascii") + b"/"
        if scope.get("query_string"):
            location += b"?" + scope["query_string"]
        await send_plain(send, 301, "301 Moved Permanently\n", head=head,
                         headers=[(b"location", location)])

    async def _respond(self, scope: Scope, receive: Receive, send: Send, f: OpenFile,
                       head: bool) -> None:
        request = _request_headers(scope)
        validators: Headers = [(b"etag", f.etag.encode("ascii")),
                               (b"last-modified", http_date(f.mtime).encode("ascii"))]
        if self.cache_control is not None:
            validators.append((b"cache-control", self.cache_control))
        if not_modified(request, f.etag, f.mtime):
            await send({"type": "http.response.start", "status": 304, "headers": validators})
            await send({"type": "http.response.body", "body": b""})
            return
        headers: Headers = [(b"content-type", content_type(f.path).encode("latin-1")),
                            (b"accept-ranges", b"bytes"), *validators]
        span: ByteRange | None = None
        range_header = request.get("range")
        if range_header is not None and (
                "if-range" not in request or if_range_allows(request["if-range"], f.etag,
                                                             f.mtime)):
            try:
                span = parse_range(range_header, f.size)
            except Unsatisfiable:
                headers = [(b"content-range", f"bytes */{f.size}".encode("ascii")), *validators]
                await send_plain(send, 416, "416 Range Not Satisfiable\n", head=head,
                                 headers=headers)
                return
        if span is None:
            status, start, length = 200, 0, f.size
        else:
            status, start, length = 206, span.start, span.length
            headers.append((b"content-range", span.content_range(f.size).encode("ascii")))
        headers.append((b"content-length", str(length).encode("ascii")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if head or length == 0:
            await send({"type": "http.response.body", "body": b""})
        elif span is None and PATHSEND in (scope.get("extensions") or {}):
            await send({"type": PATHSEND, "path": f.path})
        else:
            await self._stream(receive, send, f.fd, start, length)

    async def _stream(self, receive: Receive, send: Send, fd: int, start: int,
                      length: int) -> None:
        """Send `length` bytes from `start`, one chunk read (in a thread) at a time.

        ASGI servers drop writes to a vanished client silently, so a watcher notices the
        ``http.disconnect`` and stops the reads instead of pulling the rest of a large file
        off the disk for nobody.
        """
        gone = asyncio.Event()
        watcher = None
        if length > self.chunk_size:
            watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            offset, end = start, start + length
            while offset < end and not gone.is_set():
                data = await asyncio.to_thread(os.pread, fd, min(self.chunk_size, end - offset),
                                               offset)
                if not data:  # the file shrank under us: end the body short rather than hang
                    raise OSError(f"file truncated while sending at byte {offset}")
                offset += len(data)
                await send({"type": "http.response.body", "body": data,
                            "more_body": offset < end})
        finally:
            if watcher is not None:
                watcher.cancel()


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def _request_headers(scope: Scope) -> dict[str, str]:
    """The conditional/range request headers, decoded. Repeated ``If-None-Match`` lines form
    one list (RFC 9110 §5.3); for the others the first line counts."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _CONDITIONAL:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            if key in out and key == "if-none-match":
                out[key] += ", " + text
            else:
                out.setdefault(key, text)
    return out


def _note(scope: Scope, value: str) -> None:
    ctx = get_context(scope)
    if ctx is not None:
        ctx.notes["static"] = value
