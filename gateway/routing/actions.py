"""The small location actions: ``return`` and ``headers``, and ``{name}`` templates for both.

A template substitutes a regex location's named groups. Values come from the normalised
request path, which a client controls, so every value is escaped for where it lands:
percent-encoded in a URL as nginx escapes a URI (a ``?``, ``#``, ``\\`` or CR/LF cannot change
the URL's shape), control and non-ASCII characters percent-encoded in a header value (no
header injection), verbatim in a body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

from gateway.routing.uri import escape_uri, to_bytes
from gateway.types import Headers, Message, Receive, Scope, Send

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NO_BODY_CODES = frozenset({204, 304})


def url_escape(value: str) -> str:
    return escape_uri(to_bytes(value))


def header_escape(value: str) -> str:
    return _HEADER_UNSAFE.sub(lambda m: quote(to_bytes(m.group()), safe=""), value)


def same_host(location: str) -> str:
    """A redirect target that cannot leave the host when it was meant as a path: a leading
    run of ``/`` or ``\\`` (``//evil.example``, ``/\\evil.example``, which browsers read as
    another host) becomes one ``/``."""
    if location[:2] in ("//", "/\\") or location[:1] == "\\":
        return "/" + location.lstrip("/\\")
    return location


def verbatim(value: str) -> str:
    return value


class Template:
    """Text with ``{name}`` placeholders, parsed once. Unknown names stay as written."""

    __slots__ = ("text", "names")

    def __init__(self, text: str) -> None:
        self.text = text
        self.names = frozenset(_PLACEHOLDER.findall(text))

    def render(self, groups: Mapping[str, str], escape: Callable[[str], str]) -> str:
        if not self.names or not groups:
            return self.text
        return _PLACEHOLDER.sub(
            lambda m: escape(groups[m[1]]) if m[1] in groups else m[0], self.text)

    def __repr__(self) -> str:
        return f"<Template {self.text!r}>"


class HeaderRules:
    """``headers = ["Name: value", ...]``: set on every response of the location.

    A listed header replaces one of the same name that the action produced (so ``headers``
    can override a static file's Content-Type or Cache-Control); names listed twice are all
    sent (two ``Set-Cookie`` lines stay two).
    """

    __slots__ = ("_rules", "_names")

    def __init__(self, lines: list[str]) -> None:
        rules: list[tuple[bytes, Template]] = []
        for line in lines:
            name, _, value = line.partition(":")
            name = name.strip()
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{line!r}: {name!r} is not a header name")
            rules.append((name.lower().encode("ascii"), Template(value.strip())))
        self._rules = tuple(rules)
        self._names = frozenset(n for n, _ in rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def render(self, groups: Mapping[str, str]) -> Headers:
        return [(name, tpl.render(groups, header_escape).encode("latin-1"))
                for name, tpl in self._rules]

    def wrap(self, send: Send, groups: Mapping[str, str]) -> Send:
        """`send` with the headers added to the response start (or websocket accept)."""
        extra = self.render(groups)
        names = self._names

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                kept = [(n, v) for n, v in message.get("headers") or () if n.lower() not in names]
                message["headers"] = kept + extra
            await send(message)

        return send_with_headers

    def __repr__(self) -> str:
        return f"<HeaderRules {[n.decode() for n in self._names]}>"


class ReturnAction:
    """``return = "CODE [text]"``: answer at once, as nginx's ``return``.

    For 301/302/303/307/308 the text is the redirect target and goes into ``Location`` (a
    target that starts with ``/`` stays a path on this host, see `same_host`); otherwise it
    is the body, with `content_type` (text/plain by default; a ``text/*`` type
    without a charset gets ``charset=utf-8``, since the body is sent as UTF-8).
    """

    __slots__ = ("status", "text", "content_type")

    def __init__(self, spec: str, content_type: str | None = None) -> None:
        code, _, text = spec.strip().partition(" ")
        self.status = int(code)
        if not 200 <= self.status <= 599:
            raise ValueError(f"status {self.status} cannot be returned; use 200-599")
        self.text = Template(text.lstrip())
        if self.status in REDIRECT_CODES and same_host(self.text.text) != self.text.text:
            raise ValueError(f"{text.strip()!r}: a redirect target starting with // or \\ "
                             "names another host; write the scheme (https://host/...) "
                             "or a path starting with a single /")
        ctype = content_type or "text/plain"
        if ctype.startswith("text/") and "charset" not in ctype:
            ctype += "; charset=utf-8"
        self.content_type = ctype.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       groups: Mapping[str, str]) -> None:
        head = scope.get("method") == "HEAD"
        if self.status in REDIRECT_CODES and self.text.text:
            location = same_host(self.text.render(groups, url_escape))
            await _send(send, self.status, [(b"location", to_bytes(location))], b"")
        elif self.status in _NO_BODY_CODES:
            await _send(send, self.status, [], b"", length=False)
        else:
            body = to_bytes(self.text.render(groups, verbatim))
            headers = [(b"content-type", self.content_type)]
            await _send(send, self.status, headers, body, head=head)

    def __repr__(self) -> str:
        return f"<ReturnAction {self.status} {self.text.text!r}>"


async def _send(send: Send, status: int, headers: Headers, body: bytes, *,
                length: bool = True, head: bool = False) -> None:
    if length:
        headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
