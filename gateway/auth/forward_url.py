"""Where forward auth asks: an URL or an orchestrated app, parsed.

Apart from `gateway.auth.forward` so that validating a project file (`gateway.config.schema`)
needs only the parsing, not the request handling with its transport and orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_APP_PREFIX = "app:"


@dataclass(frozen=True)
class ForwardURL:
    """Where the auth service is: `app` set for an orchestrated app, else host/port."""

    app: str | None
    host: str
    port: int
    path: str
    query: bytes

    @property
    def label(self) -> str:
        where = f"app {self.app}" if self.app else f"http://{self.host}:{self.port}"
        return where + self.path


def parse_forward_url(url: str) -> ForwardURL:
    """``http://host[:port]/path[?query]`` or ``app:NAME[/path]``; ValueError otherwise."""
    if url.startswith(_APP_PREFIX):
        name, slash, rest = url[len(_APP_PREFIX):].partition("/")
        if not name:
            raise ValueError(f"{url!r} names no app (app:NAME/path)")
        path, _, query = ("/" + rest if slash else "/").partition("?")
        return ForwardURL(name, "127.0.0.1", 0, path, query.encode("latin-1"))
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"must be an http:// URL or app:NAME/path, not {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return ForwardURL(None, parts.hostname, port, parts.path or "/",
                      parts.query.encode("latin-1"))
