"""The request URI as nginx sees it: normalised once on the way in, escaped on the way out.

nginx never matches a location against the request line as sent. ``ngx_http_parse_complex_uri``
first turns it into ``$uri``: the path up to ``?`` or ``#``, percent-escapes decoded (an
encoded ``/`` or ``.`` then counts like a written one; ``%25``, ``%23``, ``%3F`` stay a plain
``%``, ``#``, ``?``), runs of ``/`` merged (``merge_slashes on``, nginx's default), ``.``
segments dropped and ``..`` segments resolved. It refuses with 400 a ``..`` that climbs above
the root, an encoded NUL (``%00``) and a broken escape (``%zz``, a trailing ``%`` or ``%4``).

`normalise` does the same, in one pass of C-level bytes operations: a path with no ``%``,
``//``, ``/.`` or ``#`` is already normal and comes back as it is, which is nearly every
request. The result is bytes, as nginx's is: a location's regex counts bytes, not characters.
`escape_uri` is nginx's ``NGX_ESCAPE_URI``, used wherever a normalised path goes back into a
URL (``proxy_pass``, redirects).
"""

from __future__ import annotations

import re

from gateway.types import Scope

_HEX = frozenset(b"0123456789abcdefABCDEF")
_BYTE = [bytes((i,)) for i in range(256)]
#: ``scheme://authority`` of an absolute-form request target (some servers pass it on).
#: What makes a path need work: an escape, a slash run, a dot segment or a fragment.
_COMPLEX = re.compile(rb"%|//|/\.|#")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
#: Bytes that ``NGX_ESCAPE_URI`` escapes: controls, space, ``" # % < > ? \\ ^ ` { | }``, DEL
#: and everything above ASCII. Everything else (``/ : @ ! $ & ' ( ) * + , ; = [ ] ~``) stays.
_UNSAFE = re.compile(rb'[\x00-\x20"#%<>?\\^`{|}\x7f-\xff]')
_FORBIDDEN_IN_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")


class InvalidURI(ValueError):
    """The request path cannot be normalised; nginx answers such a request 400."""


def normalise(raw: bytes) -> bytes:
    """The normalised path of `raw`, the path of a request target as the client sent it.

    Raises `InvalidURI` where nginx answers 400.
    """
    if _COMPLEX.search(raw) is None and raw[:1] == b"/":
        return raw
    raw = origin_form(raw)
    fragment = raw.find(b"#")
    if fragment >= 0:
        raw = raw[:fragment]
    if b"%" in raw:
        raw = _decode(raw)
    return resolve(raw)


def request_uri(scope: Scope) -> bytes:
    """The normalised path of an ASGI request; `InvalidURI` where nginx answers 400."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        # ASGI lets a server leave raw_path out; the decoded path, escaped again, stands in.
        raw = escape_uri(to_bytes(scope["path"])).encode("ascii")
    return normalise(raw)


#: Scope key holding the path as the server decoded it, set only when `canonicalise` changed
#: it: `raw_path` then no longer matches `path` (a prefix cannot be cut from it), and the
#: request log shows what the client asked for.
REWRITTEN = "pyserve.path_as_sent"


def canonicalise(scope: Scope) -> None:
    """Make ``scope["path"]`` the normalised path every extension sees, as nginx's modules
    all see ``$uri``; ``raw_path`` stays as sent (``proxy_pass`` without a URI part sends
    it). Raises `InvalidURI` where nginx answers 400. Costs one search for a plain path."""
    raw: bytes | None = scope.get("raw_path")
    if raw is not None and raw[:1] == b"/" and _COMPLEX.search(raw) is None:
        return
    path = request_uri(scope).decode("utf-8", "replace")  # as servers decode a path
    if path != scope["path"]:
        scope[REWRITTEN] = scope["path"]
        scope["path"] = path


def origin_form(raw: bytes) -> bytes:
    """The path of a request target: `raw` itself when it starts with ``/``, the part after
    the authority for an absolute-form target (``http://host/p`` is ``/p``; nothing after the
    host is ``/``). Anything else (``*``, an empty target) is `InvalidURI`."""
    if raw[:1] == b"/":
        return raw
    m = _ABSOLUTE.match(raw)
    if m is None:
        raise InvalidURI("the request target is not a path")
    rest = raw[m.end():]
    if not rest:
        return b"/"
    if rest[:1] != b"/":
        raise InvalidURI("the request target is not a path")
    return rest


def _decode(raw: bytes) -> bytes:
    """Decode every ``%XX`` once; a decoded ``%`` is never read as the start of another."""
    pieces = raw.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            raise InvalidURI("invalid percent-escape in the path")
        byte = int(piece[:2], 16)
        if byte == 0:
            raise InvalidURI("encoded NUL in the path")
        out.append(_BYTE[byte])
        out.append(piece[2:])
    return b"".join(out)


def resolve(path: bytes) -> bytes:
    """Merge slashes and resolve ``.`` and ``..`` in a decoded path that starts with ``/``.

    As nginx: a path that ends in ``/``, ``/.`` or ``/..`` keeps a trailing slash, and a
    ``..`` with nothing left to remove is `InvalidURI`.
    """
    segments = path.split(b"/")
    kept: list[bytes] = []
    for seg in segments:
        if seg == b"" or seg == b".":
            continue
        if seg == b"..":
            if not kept:
                raise InvalidURI("'..' above the root in the path")
            kept.pop()
            continue
        kept.append(seg)
    if not kept:
        return b"/"
    out = b"/" + b"/".join(kept)
    if segments[-1] in (b"", b".", b".."):
        out += b"/"
    return out


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"%%%02X" % m[0][0]


def escape_uri(path: bytes) -> str:
    """`path` percent-escaped for a URL as nginx's ``ngx_escape_uri(NGX_ESCAPE_URI)`` does
    (upper-case hex). ``?``, ``#``, ``%``, ``\\`` and controls are escaped, ``/`` is not."""
    if _UNSAFE.search(path) is not None:
        path = _UNSAFE.sub(_escape_byte, path)
    return path.decode("ascii")


def escape_raw(target: bytes) -> str:
    """A request target as the client sent it, made fit for a request line: only bytes HTTP
    forbids there (controls, space, non-ASCII, which some servers let through) are escaped,
    so every escape the client wrote stays as written."""
    if _FORBIDDEN_IN_TARGET.search(target) is not None:
        target = _FORBIDDEN_IN_TARGET.sub(_escape_byte, target)
    return target.decode("ascii")


def to_text(path: bytes) -> str:
    """A normalised path (or part of one) as text: UTF-8, with undecodable bytes kept as
    surrogates (as file names are), so encoding it back gives the same bytes."""
    return path.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    """The inverse of `to_text`."""
    return text.encode("utf-8", "surrogateescape")
