"""Build an app object from its description; used in app processes and for in-process mounts.

`load_app` imports ``module:attribute``, calls a factory with its keyword arguments, finds
out which interface the object speaks (`detect_interface`, as uvicorn's ``Config.load`` does
for the ASGI versions, plus WSGI: a plain two-argument callable) and serves it as that: a
WSGI app through `a2wsgi.WSGIMiddleware`, an ASGI 2 app through `ASGI2App`. An explicit
`app_type` that contradicts the object is one `AppLoadError` naming the fix.

In an app process the server imports ``gateway.orchestrator.childapp:app``, which calls
`child_app`: it builds the app from the JSON description in the environment (inherited by
every worker) and wraps it in `AppProcessLayer`, which tells it the prefix it is mounted
under and marks every line the app writes while serving a request with the request id, for
the workbench to read back.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import io
import logging
import os
import sys
from typing import Any, Literal
from urllib.parse import quote

from gateway.orchestrator.protocol import RID_END, RID_START, SPEC_ENV, ChildSpec
from gateway.types import ASGIApp, Receive, Scope, Send

#: The request id of the request the current task or thread is serving, if any.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pyserve_request_id", default=None)


class AppLoadError(Exception):
    """The app could not be imported or built; ``str()`` is a one-line cause."""


def add_to_sys_path(folder: str) -> None:
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)


Interface = Literal["asgi3", "asgi2", "wsgi"]


def load_app(app_path: str, *, app_type: str | None = None, factory: bool = False,
             factory_args: dict[str, Any] | None = None,
             module_path: str | None = None) -> ASGIApp:
    """The ASGI 3 app named by `app_path`; AppLoadError with a one-line cause otherwise.

    Without `app_type` the object's own interface decides; with one, a contradicting
    object is an error (a WSGI app called as ASGI fails on every request, one traceback
    per health probe, instead of once here)."""
    if module_path:
        add_to_sys_path(module_path)
    module_name, _, attr = app_path.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"{app_path!r} is not 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {_describe(exc)}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        try:
            obj = obj(**(factory_args or {}))
        except Exception as exc:
            raise AppLoadError(f"factory {app_path!r} failed: {_describe(exc)}") from exc
    if not callable(obj):
        raise AppLoadError(f"{app_path!r} is not callable (got {type(obj).__name__})")
    found = detect_interface(obj)
    kind = _describe_interface(found)
    if app_type == "asgi" and found == "wsgi":
        raise AppLoadError(f"app_type = 'asgi' but {app_path} is {kind}; "
                           "set app_type = 'wsgi' or remove the key")
    if app_type == "wsgi" and found in ("asgi3", "asgi2"):
        raise AppLoadError(f"app_type = 'wsgi' but {app_path} is {kind}; "
                           "set app_type = 'asgi' or remove the key")
    if found == "wsgi" or (found is None and app_type == "wsgi"):
        try:
            from a2wsgi import WSGIMiddleware
        except ImportError:
            raise AppLoadError("WSGI apps need a2wsgi: pip install a2wsgi") from None
        wsgi: Any = WSGIMiddleware(obj)
        return CoroutineReceive(wsgi)
    if found == "asgi2":
        return ASGI2App(obj)
    return obj  # type: ignore[no-any-return]


def detect_interface(obj: Any) -> Interface | None:
    """Which interface `obj` speaks, from its shape; None when its signature cannot tell.

    Like uvicorn's ``Config.load``: a class without ``__await__`` is ASGI 2 (instantiated
    with the scope), a coroutine function (or an object whose ``__call__`` is one) is ASGI 3.
    A plain callable is told apart by its positional parameters: three is ASGI 3 (a sync
    function returning an awaitable), two is WSGI (``environ, start_response``), one is
    ASGI 2."""
    if inspect.isclass(obj):
        return "asgi3" if hasattr(obj, "__await__") else "asgi2"
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(obj, "__call__", None)  # noqa: B004 - the method, for its signature
    if target is None:
        return None
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            inspect.unwrap(target)):
        return "asgi3"
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    required = [p for p in positional if p.default is p.empty]
    for count, interface in ((3, "asgi3"), (2, "wsgi"), (1, "asgi2")):
        if len(required) <= count <= len(positional):
            return interface  # type: ignore[return-value]
    return None


def _describe_interface(found: Interface | None) -> str:
    return {"asgi3": "an ASGI app", "asgi2": "an ASGI 2 app",
            "wsgi": "a WSGI callable"}.get(found or "", "an app of unknown kind")


class ASGI2App:
    """Serves an ASGI 2 app (``app(scope)`` returns ``instance(receive, send)``) as ASGI 3."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope)(receive, send)

    def __repr__(self) -> str:
        return f"<ASGI2App {self.app!r}>"


class CoroutineReceive:
    """Hands the app a `receive` that returns a real coroutine.

    a2wsgi passes ``receive()`` to `asyncio.run_coroutine_threadsafe`, which accepts only
    coroutines; some servers (granian) give an awaitable that is not one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def coroutine_receive() -> Any:
            return await receive()

        await self.app(scope, coroutine_receive, send)

    def __repr__(self) -> str:
        return f"<CoroutineReceive {self.app!r}>"


def is_wsgi(app: ASGIApp) -> bool:
    """`app` (from `load_app`) is a WSGI app served through a2wsgi."""
    return isinstance(app, CoroutineReceive)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class AppProcessLayer:
    """What an app process adds around the app, in one layer (one more coroutine frame per
    request, not one per concern):

    * the prefix the gateway stripped, told as ``uvicorn --root-path`` does: ``root_path``
      is the prefix and ``path``/``raw_path`` get it back in front (the convention of
      uvicorn >= 0.26, Starlette and Django 5, which take ``root_path`` off ``path``
      themselves; a2wsgi makes them ``SCRIPT_NAME`` and ``PATH_INFO``). Requests the gateway
      did not send (a health probe on ``/health``) are treated the same way;
    * `current_request_id` set from the X-Request-ID header for the request's duration, so
      every line the app writes meanwhile carries it (`MarkedStream`).
    """

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix
        self.raw_prefix = quote(prefix, safe="/%:@!$&'()*+,;=").encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        prefix = self.prefix
        if prefix:
            scope["root_path"] = prefix
            scope["path"] = prefix + scope["path"]
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = self.raw_prefix + raw
        rid = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                rid = value.decode("latin-1")
                break
        if rid is None:
            await self.app(scope, receive, send)
            return
        token = current_request_id.set(rid)
        try:
            await self.app(scope, receive, send)
        finally:
            current_request_id.reset(token)

    def __repr__(self) -> str:
        return f"<AppProcessLayer prefix={self.prefix!r} {self.app!r}>"


class MarkedStream(io.TextIOBase):
    """A text stream that starts each line written during a request with the id marker.

    Outside a request it is a pass-through; the check is one context-variable read.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        rid = current_request_id.get()
        if rid is None:
            self._inner.write(text)
            self._at_line_start = text.endswith("\n")
            return len(text)
        marker = f"{RID_START}{rid}{RID_END}"
        lines = text.split("\n")
        out = []
        for i, part in enumerate(lines):
            starts_line = self._at_line_start if i == 0 else True
            if part and starts_line:
                out.append(marker + part)
            else:
                out.append(part)
        self._inner.write("\n".join(out))
        self._at_line_start = text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self._inner.fileno())

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._inner, "encoding", "utf-8"))

    @property
    def buffer(self) -> Any:
        return self._inner.buffer

    def __repr__(self) -> str:
        return f"<MarkedStream {self._inner!r}>"


def _record_factory_with_request_id() -> None:
    # A logger filter on the root logger would miss records that propagate from child
    # loggers; the record factory sees every record, so formats may use %(request_id)s.
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id.get() or "-"
        return record

    logging.setLogRecordFactory(factory)


def install_request_id_output() -> None:
    """Mark stdout/stderr lines written during a request (idempotent)."""
    if isinstance(sys.stdout, MarkedStream):
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None:
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
            setattr(sys, name, MarkedStream(stream))
    _record_factory_with_request_id()


def read_spec() -> ChildSpec:
    """The spec of this app process, from the environment the workbench set."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise AppLoadError(f"{SPEC_ENV} is not set: this module runs inside an app process")
    try:
        return ChildSpec.from_json(raw)
    except ValueError as exc:
        raise AppLoadError(f"{SPEC_ENV}: {exc}") from None


_child_app: ASGIApp | None = None


def child_app() -> ASGIApp:
    """The app of this app process, built once from the environment."""
    global _child_app
    if _child_app is None:
        spec = read_spec()
        for folder in reversed(spec.sys_path):
            add_to_sys_path(folder)
        install_request_id_output()
        if not spec.app_path:
            raise AppLoadError(f"app {spec.app!r} has neither app_path nor command")
        inner = load_app(spec.app_path, app_type=spec.app_type, factory=spec.factory,
                         factory_args=dict(spec.factory_args), module_path=spec.module_path)
        _child_app = AppProcessLayer(inner, spec.prefix)
    return _child_app

