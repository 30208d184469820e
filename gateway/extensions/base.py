"""The extension interface: plain ASGI middleware with typed options.

An extension wraps the rest of the pipeline (`app`). Its request hook is the code before it
calls ``await self.app(scope, receive, send)`` (answering itself instead means "first to
answer wins"), its response hook is a wrapper around `send`. Scope types it does not handle
must pass straight through.

``__call__`` may also be a plain function that returns the awaitable of whatever answers
(``return self.app(scope, receive, send)``) when it has nothing to do after that: the
pipeline only awaits what it gets, and every ``async def`` layer the request passes through
costs a frame on each suspension of the hot path (the routing extension does this).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

from gateway.direct import ASGI, Plan
from gateway.services import Services
from gateway.types import ASGIApp, Receive, Scope, Send


class Extension:
    #: The `type` name in `[[extensions]]`.
    name: ClassVar[str] = ""
    #: The options dataclass validated by `check` (`dict` accepts any table).
    Options: ClassVar[type] = dict
    #: Pipeline members that must see a request before any other (IP filtering) set this.
    runs_first: ClassVar[bool] = False
    #: Members that must also check requests for the gateway's own /metrics (authentication)
    #: set this and implement `guard`.
    guards_builtins: ClassVar[bool] = False

    #: Members that implement `plan` (and `planned`) set this; a pipeline whose members all
    #: do serves bodyless requests on the direct path (`gateway.direct`). Plugins need not.
    plans: ClassVar[bool] = False

    def __init__(self, app: ASGIApp, *, options: Any, services: Services) -> None:
        self.app = app
        self.options = options
        self.services = services

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self.app(scope, receive, send)

    def guard(self, scope: Scope, receive: Receive, send: Send, *,
              app: ASGIApp) -> Awaitable[None]:
        """This extension's request check, in front of `app` instead of the rest of the
        pipeline (used for /metrics when `guards_builtins` is set)."""
        return app(scope, receive, send)

    def plan(self, scope: Scope, plan: Plan) -> int:
        """This extension's decision for `scope` on the direct path, with the same code as
        its ``__call__``: `PASS` (it lets the request through; it may add response headers
        to `plan`), `ANSWER` (the request goes upstream to `plan.target`) or `ASGI` (only
        ``__call__`` can serve it). Nothing is counted here: a plan may still be dropped."""
        return ASGI

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        """The planned request's response, `status`, is going out: count it as ``__call__``
        would have."""

    async def startup(self) -> None:
        """Called once when the pipeline goes live (after the previous one, on reload)."""

    async def shutdown(self) -> None:
        """Called when the pipeline is replaced or the engine stops."""

    def metrics(self) -> dict[str, Any] | None:
        """Counters shown under ``extensions.<name>`` in /metrics; None for nothing."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
