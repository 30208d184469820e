"""An app made by a factory with keyword arguments."""

from __future__ import annotations

from tests.apps.common import lifespan, route_path, send_json, send_text


def create_app(greeting: str = "hello", times: int = 1):
    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if route_path(scope) == "/health":
            await send_text(send, "ok")
            return
        await send_json(send, {"greeting": greeting * times, "path": route_path(scope),
                               "root_path": scope.get("root_path", "")})

    return app
