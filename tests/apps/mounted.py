"""An app with lifespan state, for in-process mounts."""

from __future__ import annotations

import os

from tests.apps.common import route_path, send_json

EVENTS: list[str] = []


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                EVENTS.append("startup")
                if "state" in scope:
                    scope["state"]["greeting"] = "from lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                EVENTS.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send_json(send, {"path": route_path(scope), "scope_path": scope["path"],
                           "root_path": scope.get("root_path", ""),
                           "state": dict(scope.get("state") or {}),
                           "django": os.environ.get("DJANGO_SETTINGS_MODULE")})
