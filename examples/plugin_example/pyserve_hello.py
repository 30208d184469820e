"""An example pyserve-tui extension, installed as a plugin through an entry point.

    [[extensions]]
    type = "hello"
    [extensions.config]
    greeting = "Hello from the plugin"
    path = "/hello"

It answers ``GET /hello`` itself, tags every other http response with a header on the way
out, and passes websocket and lifespan scopes through untouched, as every extension must.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.extensions.base import Extension
from gateway.responses import send_plain


@dataclass(frozen=True)
class HelloOptions:
    """The ``[extensions.config]`` table; `pyserve-tui check` validates it from these fields."""

    greeting: str = "Hello"
    path: str = "/hello"
    header: str = "X-Hello"

    def validate(self) -> list[tuple[str, str]]:
        if not self.path.startswith("/"):
            return [("path", f"must start with /, not {self.path!r}")]
        return []


class HelloExtension(Extension):
    name = "hello"
    Options = HelloOptions

    def __init__(self, app: Any, *, options: HelloOptions, services: Any) -> None:
        super().__init__(app, options=options, services=services)
        # Encoded once here, not per request.
        self.body = (options.greeting + "\n").encode()
        self.header = (options.header.lower().encode("latin-1"),
                       options.greeting.encode("latin-1", "replace"))
        self.greeted = 0
        self.tagged = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.options.path and scope["method"] in ("GET", "HEAD"):
            self.greeted += 1
            await send_plain(send, 200, self.body, head=scope["method"] == "HEAD")
            return

        async def send_tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
                self.tagged += 1
            await send(message)

        await self.app(scope, receive, send_tagged)

    def metrics(self) -> dict[str, Any]:
        return {"greeted": self.greeted, "tagged": self.tagged}
