"""`asgi`: run ASGI/WSGI apps inside the gateway process, mounted at path prefixes.

Apps are imported when the pipeline is built, so a bad `app_path` is refused before the
pipeline goes live. A mount with `strip_path` sees the request as an app process does (and
as an app behind ``uvicorn --root-path`` does): ``root_path`` is the prefix and ``path``
the whole path, which Starlette 1.x, Django 5 and a2wsgi (``SCRIPT_NAME`` + ``PATH_INFO``)
take apart themselves. Its forwarding headers are the gateway's (see
`gateway.proxy.headers.Forwarding`), as for a proxied app. Mounted ASGI apps get the
lifespan protocol (startup in `startup`, shutdown in `shutdown`) when they support it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.config.schema import AsgiOptions, MountConfig
from gateway.context import get_context
from gateway.errors import StartupError
from gateway.extensions.base import Extension
from gateway.orchestrator.apploader import AppLoadError, is_wsgi, load_app
from gateway.proxy.headers import FORWARDING_HEADERS, collect_forwarding
from gateway.services import Services
from gateway.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pyserve.asgi")

LIFESPAN_TIMEOUT = 30.0


@dataclass
class Mount:
    config: MountConfig
    prefix: str
    app: ASGIApp
    label: str
    state: dict[str, Any] = field(default_factory=dict)
    lifespan: _Lifespan | None = None

    def __repr__(self) -> str:
        return f"<Mount {self.label!r} at {self.prefix!r}>"


class AsgiMountsExtension(Extension):
    name: ClassVar[str] = "asgi"
    Options: ClassVar[type] = AsgiOptions

    def __init__(self, app: ASGIApp, *, options: Any, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.mounts: list[Mount] = []
        for cfg in options.mounts:
            self.mounts.append(self._load(cfg))
        # Longest prefix first; "/" (everything) last.
        self.mounts.sort(key=lambda m: len(m.prefix) if m.prefix != "/" else 0, reverse=True)
        self.requests = 0

    def _load(self, cfg: MountConfig) -> Mount:
        project = self.services.project
        module_path = str(project.resolve(cfg.module_path).resolve()) if cfg.module_path else None
        if cfg.django_settings:
            os.environ["DJANGO_SETTINGS_MODULE"] = cfg.django_settings
        try:
            app = load_app(cfg.app_path, app_type=cfg.app_type, factory=cfg.factory,
                           factory_args=dict(cfg.factory_args), module_path=module_path)
        except AppLoadError as exc:
            raise StartupError(f"asgi mount {cfg.path!r}: {exc}") from exc
        prefix = cfg.path.rstrip("/") or "/"
        return Mount(cfg, prefix, app, cfg.name or cfg.path)

    def match(self, path: str) -> tuple[Mount, str] | None:
        """The mount with the longest prefix of `path` (at a segment boundary) and the rest."""
        for mount in self.mounts:
            if mount.prefix == "/":
                return mount, path
            if path == mount.prefix or path.startswith(mount.prefix + "/"):
                return mount, path[len(mount.prefix):] or "/"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found = self.match(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        mount, _ = found
        ctx = get_context(scope)
        if ctx is not None:
            ctx.app = mount.label
            ctx.route = f"mount:{mount.prefix}"
        child = dict(scope)
        prefix = ""
        if mount.config.strip_path and mount.prefix != "/":
            prefix = mount.prefix
            child["root_path"] = scope.get("root_path", "") + prefix
        headers = scope["headers"]
        host = next((v for n, v in headers if n == b"host"), b"")
        child["headers"] = [h for h in headers if h[0] not in FORWARDING_HEADERS]
        child["headers"] += self.services.forwarding.headers(
            scope, collect_forwarding(headers), host, prefix)
        if mount.state:
            child["state"] = dict(mount.state)
        self.requests += 1
        await mount.app(child, receive, send)

    async def startup(self) -> None:
        for mount in self.mounts:
            if not is_wsgi(mount.app):
                lifespan = _Lifespan(mount)
                if await lifespan.startup():
                    mount.lifespan = lifespan

    async def shutdown(self) -> None:
        for mount in reversed(self.mounts):
            if mount.lifespan is not None:
                lifespan, mount.lifespan = mount.lifespan, None
                await lifespan.shutdown()

    def metrics(self) -> dict[str, Any] | None:
        return {"mounts": len(self.mounts), "requests": self.requests}

    def __repr__(self) -> str:
        return f"<AsgiMountsExtension {[m.prefix for m in self.mounts]}>"


class _Lifespan:
    """Drives one app's lifespan protocol from a task that lives from startup to shutdown."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.mount.state}
        try:
            await self.mount.app(scope, self._inbox.get, self._outbox.put)
        finally:
            await self._outbox.put({"type": "_app_returned"})

    async def _exchange(self, message: str) -> Message | None:
        await self._inbox.put({"type": message})
        try:
            async with asyncio.timeout(LIFESPAN_TIMEOUT):
                return await self._outbox.get()
        except TimeoutError:
            log.warning("mount %r: no answer to %s within %ss", self.mount.label, message,
                        LIFESPAN_TIMEOUT)
            return None

    async def startup(self) -> bool:
        """True if the app speaks lifespan and started; an app that does not is fine."""
        self._task = asyncio.create_task(self._run(), name=f"lifespan-{self.mount.label}")
        reply = await self._exchange("lifespan.startup")
        kind = reply["type"] if reply else "timeout"
        if kind == "lifespan.startup.complete":
            return True
        if kind == "lifespan.startup.failed":
            await self._finish()
            raise StartupError(f"asgi mount {self.mount.prefix!r}: lifespan startup failed: "
                               f"{reply.get('message', '') if reply else ''}")
        await self._finish()  # the app does not support lifespan (it returned or raised)
        return False

    async def shutdown(self) -> None:
        reply = await self._exchange("lifespan.shutdown")
        if reply and reply["type"] == "lifespan.shutdown.failed":
            log.warning("mount %r: lifespan shutdown failed: %s", self.mount.label,
                        reply.get("message", ""))
        await self._finish()

    async def _finish(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
        # The app's own failure (e.g. an app that rejects lifespan scopes) is not ours.
        await asyncio.gather(task, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<_Lifespan {self.mount.label!r} running={self._task is not None}>"
