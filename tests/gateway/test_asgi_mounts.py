"""The `asgi` extension: apps mounted inside the gateway process, through a real gateway."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import tomlkit

from gateway.config.loader import validate_text
from gateway.errors import StartupError
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.pipeline import Pipeline
from gateway.requestlog import RequestLog
from gateway.services import Services
from tests.support import harness


def mounts_toml(mounts: list[dict]) -> str:
    for mount in mounts:
        mount.setdefault("module_path", str(harness.ROOT))
    return tomlkit.dumps({"extensions": [{"type": "asgi", "config": {"mounts": mounts}}]})


@pytest.fixture(autouse=True)
def _clean_django_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)


async def test_mounts_route_by_longest_prefix_and_strip(tmp_path: Path) -> None:
    from tests.apps import mounted

    text = mounts_toml([
        {"path": "/api", "app_path": "tests.apps.basic:app", "name": "api"},
        {"path": "/api/fac", "app_path": "tests.apps.factory:create_app", "factory": True,
         "factory_args": {"greeting": "yo", "times": 3}},
        {"path": "/keep", "app_path": "tests.apps.basic:app", "strip_path": False},
        {"path": "/wsgi", "app_path": "tests.apps.wsgi_app:app", "app_type": "wsgi"},
        {"path": "/life", "app_path": "tests.apps.mounted:app", "name": "life",
         "django_settings": "mysite.settings"},
    ])
    mounted.EVENTS.clear()
    async with harness.serve_config(text, tmp_path) as gw:
        assert mounted.EVENTS == ["startup"]
        async with httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=10) as http:
            r = await http.get("/api/echo?x=1", headers={
                "x-request-id": "mount-1", "x-forwarded-for": "6.6.6.6",
                "x-forwarded-prefix": "/evil", "x-forwarded-host": "evil.test"})
            body = r.json()
            assert (body["path"], body["root_path"], body["query"]) == ("/echo", "/api", "x=1")
            # As behind `uvicorn --root-path`: the path includes the root path.
            assert body["scope_path"] == "/api/echo"
            # The forwarding headers are the gateway's, not the client's.
            assert body["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert body["headers"]["x-forwarded-prefix"] == "/api"
            assert body["headers"]["x-forwarded-host"] == r.request.headers["host"]
            assert body["pid"] == os.getpid()  # in-process
            assert r.headers["x-request-id"] == "mount-1"

            r = await http.get("/api/fac/hi")
            assert r.json() == {"greeting": "yoyoyo", "path": "/hi", "root_path": "/api/fac"}
            assert (await http.get("/api/facade")).json()["path"] == "/facade"  # not /api/fac
            assert (await http.get("/api")).json()["path"] == "/"

            body = (await http.get("/keep/echo")).json()
            assert (body["path"], body["root_path"]) == ("/keep/echo", "")
            assert "x-forwarded-prefix" not in body["headers"]  # nothing stripped, nothing told

            r = await http.post("/wsgi/echo", content=b"abc")
            body = r.json()
            assert (body["kind"], body["path"], body["script_name"], body["body"]) == (
                "wsgi", "/echo", "/wsgi", "abc")

            body = (await http.get("/life/x")).json()
            assert body["state"] == {"greeting": "from lifespan"}
            assert body["django"] == "mysite.settings"

            assert (await http.get("/other")).status_code == 404
            metrics = (await http.get("/metrics")).json()
            assert metrics["apps"]["api"]["requests"] == 3
            assert metrics["apps"]["/api/fac"]["requests"] == 1
            assert metrics["apps"]["life"]["requests"] == 1
            assert metrics["apps"]["/wsgi"]["requests"] == 1  # no name: the path names it
            assert metrics["extensions"]["asgi"] == {"mounts": 5, "requests": 7}
    assert mounted.EVENTS == ["startup", "shutdown"]


async def test_module_path_resolves_against_the_project_folder(tmp_path: Path) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "mount_here_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'http'\n"  # no lifespan support: that is fine
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': scope['path'].encode()})\n")
    text = tomlkit.dumps({"extensions": [{"type": "asgi", "config": {"mounts": [
        {"path": "/", "app_path": "mount_here_app:app", "module_path": "src"}]}}]})
    async with harness.serve_config(text, tmp_path) as gw:
        async with httpx.AsyncClient(base_url=gw.url, trust_env=False) as http:
            assert (await http.get("/any/where")).text == "/any/where"


@pytest.mark.parametrize(("app_path", "message"), [
    ("tests.apps.broken:app", "cannot import 'tests.apps.broken'"),
    ("tests.apps.basic:nothing_here", "has no attribute 'nothing_here'"),
])
def test_a_mount_that_cannot_load_is_refused(tmp_path: Path, app_path: str,
                                             message: str) -> None:
    text = mounts_toml([{"path": "/bad", "app_path": app_path}])
    path = tmp_path / "workbench.toml"
    project = validate_text(path, text, environ={})
    events = EventBus()
    services = Services(project=project, events=events, metrics=MetricsRegistry(),
                        request_log=RequestLog(events, 10), transport=None)  # type: ignore[arg-type]
    with pytest.raises(StartupError, match=f"asgi mount '/bad': .*{message}"):
        Pipeline(project.extensions, services)
