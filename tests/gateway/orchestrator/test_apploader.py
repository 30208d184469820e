"""What `load_app` serves: the object's own interface, or one clear error naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.orchestrator.apploader import (
    AppLoadError,
    ASGI2App,
    detect_interface,
    is_wsgi,
    load_app,
)
from gateway.orchestrator.protocol import (
    EXIT_IMPORT_ERROR,
    IMPORT_ERROR_PREFIX,
    SPEC_ENV,
    ChildSpec,
)
from tests.support.harness import ROOT


async def asgi3(scope: Any, receive: Any, send: Any) -> None: ...


def asgi3_sync(scope: Any, receive: Any, send: Any) -> Any: ...


def wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


class ASGI2:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "seen", "path": self.scope["path"]})


class Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class WsgiInstance:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


def anything(*args: Any) -> None: ...


def test_detects_what_uvicorn_and_wsgi_servers_would() -> None:
    import flask
    import starlette.applications

    assert detect_interface(asgi3) == "asgi3"
    assert detect_interface(asgi3_sync) == "asgi3"
    assert detect_interface(Instance()) == "asgi3"
    assert detect_interface(starlette.applications.Starlette()) == "asgi3"
    assert detect_interface(wsgi) == "wsgi"
    assert detect_interface(WsgiInstance()) == "wsgi"
    assert detect_interface(flask.Flask("x")) == "wsgi"
    assert detect_interface(ASGI2) == "asgi2"
    assert detect_interface(anything) is None  # *args: cannot tell, served as ASGI


async def test_an_asgi2_app_is_served_as_asgi3() -> None:
    app = load_app("test_apploader:ASGI2", module_path=str(Path(__file__).parent))
    assert isinstance(app, ASGI2App)
    seen: list[Any] = []

    async def send(message: Any) -> None:
        seen.append(message)

    await app({"type": "http", "path": "/x"}, None, send)  # type: ignore[arg-type]
    assert seen == [{"type": "seen", "path": "/x"}]


def test_wsgi_is_detected_without_app_type() -> None:
    assert is_wsgi(load_app("tests.apps.wsgi_app:app", module_path=str(ROOT)))
    assert not is_wsgi(load_app("tests.apps.basic:app", module_path=str(ROOT)))


@pytest.mark.parametrize(("app_path", "app_type", "message"), [
    ("tests.apps.wsgi_app:app", "asgi",
     "app_type = 'asgi' but tests.apps.wsgi_app:app is a WSGI callable; "
     "set app_type = 'wsgi' or remove the key"),
    ("tests.apps.basic:app", "wsgi",
     "app_type = 'wsgi' but tests.apps.basic:app is an ASGI app; "
     "set app_type = 'asgi' or remove the key"),
])
def test_a_contradicting_app_type_is_one_error_naming_the_fix(app_path: str, app_type: str,
                                                             message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(app_path, app_type=app_type, module_path=str(ROOT))
    assert str(info.value) == message


def test_the_app_process_fails_at_load_with_that_one_line() -> None:
    """Not a traceback per request: the runner exits before any server starts."""
    spec = ChildSpec(app="site", app_path="tests.apps.wsgi_app:app", app_type="asgi",
                     module_path=str(ROOT), sys_path=(str(ROOT),),
                     backend="uvicorn", host="127.0.0.1", port=9, cwd=str(ROOT),
                     prefix="/site")
    env = dict(os.environ, **{SPEC_ENV: spec.to_json()})
    done = subprocess.run([sys.executable, "-m", "gateway.orchestrator.runner"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_IMPORT_ERROR
    assert done.stderr.splitlines() == [
        IMPORT_ERROR_PREFIX + "app_type = 'asgi' but tests.apps.wsgi_app:app is a WSGI callable; "
        "set app_type = 'wsgi' or remove the key"]
