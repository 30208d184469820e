"""``proxy_pass``: from a URL template and a matched location to an upstream target.

URI rules, as nginx's ``proxy_pass``:

* URL without a path (``http://host:port``): the request path goes upstream as the client
  sent it (``raw_path``: not normalised, not re-encoded).
* URL with a path, prefix or exact location (and ``__default__``, which acts as
  ``location /``): the normalised path with the part the location matched replaced by the
  URL's path (``location /api/`` + ``http://h/v1/`` sends ``//api/./users`` as
  ``/v1/users``), the rest re-escaped with nginx's URI escaping (`uri.escape_uri`).
* URL with a path, regex location: the URL's path, after ``{name}`` substitution (each value
  escaped), is the whole upstream path.

The client's query string is passed along unless the URL has one of its own. A URL without
placeholders is parsed once, at startup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.proxy.transport import UpstreamTarget
from gateway.routing.actions import Template, url_escape
from gateway.routing.locations import LocationMatch
from gateway.routing.uri import escape_raw, escape_uri, origin_form
from gateway.types import Scope

#: The transport speaks plain HTTP/1.1 to upstreams; an https URL would be sent in the clear.
SUPPORTED_SCHEMES = frozenset({"http"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A parsed ``proxy_pass`` URL. ``path``/``query`` are None when the URL has none."""

    scheme: str
    host: str
    port: int
    path: str | None
    query: bytes | None


def parse_proxy_url(url: str) -> ProxyURL:
    """Parse and check a ``proxy_pass`` URL; ValueError says what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(f"{url!r}: only {', '.join(sorted(SUPPORTED_SCHEMES))}:// upstreams "
                         "are supported")
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"{url!r}: bad port ({exc})") from None
    if parts.username or parts.password:
        raise ValueError(f"{url!r}: credentials in the URL are not supported")
    if parts.fragment:
        raise ValueError(f"{url!r}: a URL fragment makes no sense upstream")
    path = parts.path or None
    query = parts.query.encode("latin-1") if "?" in url else None
    return ProxyURL(scheme, host, port, path, query)


class ProxyPass:
    """The ``proxy_pass`` of one location."""

    __slots__ = ("url", "timeout", "name", "_template", "_parsed", "_regex")

    def __init__(self, url: str, *, regex: bool, timeout: float, name: str) -> None:
        self.url = url
        self.timeout = timeout
        self.name = name
        self._template = Template(url)
        self._regex = regex
        if self._template.names:
            # Check the shape now with stand-in values, so a bad URL fails at startup.
            parse_proxy_url(self._template.render({n: "x" for n in self._template.names},
                                                   url_escape))
            self._parsed: ProxyURL | None = None
        else:
            self._parsed = parse_proxy_url(url)

    def target(self, scope: Scope, match: LocationMatch[Any], uri: bytes) -> UpstreamTarget:
        """Where this request goes; `uri` is the normalised path the location matched.
        ValueError when substituted groups make a bad URL."""
        parsed = self._parsed
        if parsed is None:
            parsed = parse_proxy_url(self._template.render(match.groups, url_escape))
        if parsed.path is None:
            raw: bytes | None = scope.get("raw_path")
            # A target the normaliser accepted has an origin form, so this cannot raise.
            path = escape_raw(origin_form(raw)) if raw else escape_uri(uri)
        elif self._regex:
            path = parsed.path
        else:
            # nginx copies the rest unescaped when the client wrote no escape. It then holds
            # only what the client sent raw: escaping leaves that alone except characters a
            # request target may not hold (`\\`, `"`, `{`...), which the upstream client
            # escapes in any case. So escaping always is the same and needs no branch.
            path = parsed.path + escape_uri(uri[len(match.prefix):])
        query = parsed.query if parsed.query is not None else scope.get("query_string", b"")
        return UpstreamTarget(parsed.host, parsed.port, path, query, self.timeout, self.name,
                              parsed.scheme)

    def __repr__(self) -> str:
        return f"<ProxyPass {self.url!r} timeout={self.timeout}>"
