"""Real frameworks under a path, as a user of each checks them, on every backend.

One `pyserve-tui --no-ui` per backend serves them all (a process each, plus in-process
mounts): FastAPI (examples/frameworks), Starlette, Flask (examples/frameworks and one behind
`ProxyFix`), a `django-admin startproject` Django project through its wsgi.py, httpbin; and
as in-process `asgi` mounts FastAPI, Flask and the same Django project through asgi.py with
`django_settings`. Every app runs under a prefix with the default `strip_path = true` and
must build the URLs it would build behind nginx with ``uvicorn --root-path`` or gunicorn with
``SCRIPT_NAME`` (the README's *Apps under a path* records that reference).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.harness import ROOT, free_port, free_port_range
from tests.support.integration import Project, Workbench, WorkbenchFactory, toml_value

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "examples" / "frameworks"

#: Process apps by name: their keys in the project file.
PROCESS_APPS: dict[str, dict[str, object]] = {
    "fastapi": {"path": "/api", "app_path": "fastapi_app:app", "module_path": str(EXAMPLES)},
    "starlette": {"path": "/star", "app_path": "tests.apps.starlette_app:app",
                  "module_path": str(ROOT)},
    "flask": {"path": "/flask", "app_path": "flask_site:app", "module_path": str(EXAMPLES)},
    "proxyfix": {"path": "/pf", "app_path": "tests.apps.flask_proxyfix:app",
                 "module_path": str(ROOT)},
    "django": {"path": "/django", "app_path": "djangosite.wsgi:application",
               "module_path": str(EXAMPLES / "djangosite")},
    # httpbin has no health route; /get is its cheapest page.
    "httpbin": {"path": "/bin", "app_path": "httpbin:app", "health_check_path": "/get"},
}
#: A `command` app runs the same whatever the backend: it is started with granian's gateway only.
COMMAND_APP = {"path": "/cmd", "command": ["python", "-m", "uvicorn", "--app-dir", str(EXAMPLES),
                                          "fastapi_app:app", "--port", "$PORT"]}
MOUNTS = [
    {"path": "/m/api", "app_path": "fastapi_app:app", "module_path": str(EXAMPLES)},
    {"path": "/m/flask", "app_path": "flask_site:app", "module_path": str(EXAMPLES)},
    {"path": "/m/django", "app_path": "djangosite.asgi:application",
     "module_path": str(EXAMPLES / "djangosite"), "django_settings": "djangosite.settings"},
]
FASTAPI = ["/api", "/m/api"]
FLASK = ["/flask", "/m/flask"]
DJANGO = ["/django", "/m/django"]


def project_text(port: int, port_range: tuple[int, int], backend: str) -> str:
    lines = ["[server]", 'host = "127.0.0.1"', f"port = {port}", f'backend = "{backend}"',
             "graceful_timeout = 5.0", "", "[logging]", 'level = "warning"', "",
             "[[extensions]]", 'type = "asgi"']
    for mount in MOUNTS:
        lines += ["[[extensions.config.mounts]]",
                  *(f"{k} = {toml_value(v)}" for k, v in mount.items())]
    lines += ["", "[[extensions]]", 'type = "process_orchestration"', "[extensions.config]",
              f"port_range = {toml_value(list(port_range))}", "health_check_interval = 1.0",
              "restart_delay = 0.1", "shutdown_timeout = 5.0", "hold_requests = 10.0"]
    apps = {**PROCESS_APPS, **({"command": COMMAND_APP} if backend == "granian" else {})}
    for name, app in apps.items():
        lines += ["[[extensions.config.apps]]", f'name = "{name}"',
                  *(f"{k} = {toml_value(v)}" for k, v in app.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", params=["granian", "uvicorn", "hypercorn"])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    """One workbench per backend with every framework app in it, healthy."""
    backend = request.param
    project = Project(tmp_path_factory.mktemp(f"frameworks-{backend}"), free_port(),
                      free_port_range())
    project.write(project_text(project.port, project.port_range, backend))
    factory = WorkbenchFactory()
    apps = [*PROCESS_APPS, *(["command"] if backend == "granian" else [])]
    try:
        yield factory(project, apps=apps, timeout=90)
    finally:
        factory.close()


def same_site(wb: Workbench, location: str) -> str:
    """The path (+ query) of a Location, which must stay on the gateway: relative, or
    naming the address the client asked for, never an app's own port."""
    parts = urlsplit(location)
    assert parts.netloc in ("", urlsplit(wb.url).netloc), location
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- FastAPI --------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", FASTAPI)
def test_fastapi_docs_schema_and_redirect_slashes(site: Workbench, prefix: str) -> None:
    docs = site.http.get(f"{prefix}/docs")
    assert docs.status_code == 200
    schema_url = re.search(r"url: '([^']+)'", docs.text)
    assert schema_url is not None and schema_url.group(1) == f"{prefix}/openapi.json"
    schema = site.http.get(schema_url.group(1))
    assert schema.status_code == 200 and schema.json()["servers"] == [{"url": prefix}]

    r = site.http.get(f"{prefix}/items/")
    assert r.status_code == 307
    assert same_site(site, r.headers["location"]) == f"{prefix}/items"
    items = site.http.get(f"{prefix}/items").json()
    assert items[0]["url"] == f"{site.url}{prefix}/items/1"


@pytest.mark.parametrize("prefix", FASTAPI)
def test_fastapi_sse_arrives_event_by_event(site: Workbench, prefix: str) -> None:
    arrivals: list[tuple[float, str]] = []
    with site.http.stream("GET", f"{prefix}/events", params={"n": 3, "gap": 0.4}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line[6:]))
    assert [text for _, text in arrivals] == ["tick 0", "tick 1", "tick 2"]
    # Each event is relayed when the app sends it, not when the stream ends.
    assert arrivals[1][0] - arrivals[0][0] > 0.25 and arrivals[2][0] - arrivals[1][0] > 0.25


@pytest.mark.parametrize("prefix", FASTAPI)
def test_fastapi_websocket_echo(site: Workbench, prefix: str) -> None:
    async def echo() -> list[str]:
        uri = site.url.replace("http://", "ws://") + f"{prefix}/ws"
        async with asyncio.timeout(20), connect(uri) as ws:
            got = []
            for text in ("hello", "under a path"):
                await ws.send(text)
                got.append(str(await ws.recv()))
            return got

    assert asyncio.run(echo()) == ["hello", "under a path"]


def test_uvicorn_as_a_command_app_learns_its_prefix_from_the_environment(
        site: Workbench) -> None:
    """`uvicorn app:app --port $PORT` reads UVICORN_ROOT_PATH, as if given --root-path."""
    if "command" not in site.metrics()["apps"]:
        pytest.skip("the command app runs with the granian gateway only")
    docs = site.http.get("/cmd/docs")
    assert "url: '/cmd/openapi.json'" in docs.text
    r = site.http.get("/cmd/items/")
    assert r.status_code == 307 and same_site(site, r.headers["location"]) == "/cmd/items"


# --- Starlette ------------------------------------------------------------------------------

def test_starlette_url_for_redirect_and_cookie_path(site: Workbench) -> None:
    r = site.http.get("/star/")
    assert r.json() == {"hello": f"{site.url}/star/hello/ann",
                        "hello_path": f"{site.url}/star/hello/ann", "root_path": "/star"}
    assert "path=/star" in r.headers["set-cookie"].lower()
    assert site.http.get("/star/hello/ann").text == "hello ann"
    r = site.http.get("/star/go")
    assert r.status_code == 303 and same_site(site, r.headers["location"]) == "/star/"
    # Starlette's redirect_slashes, like FastAPI's.
    r = site.http.get("/star/hello/ann/")
    assert r.status_code == 307 and same_site(site, r.headers["location"]) == "/star/hello/ann"


# --- Flask ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", FLASK)
def test_flask_links_login_redirects_and_cookie_path(site: Workbench, prefix: str) -> None:
    with httpx.Client(base_url=site.url, trust_env=False, timeout=30) as browser:
        home = browser.get(f"{prefix}/")
        assert f'href="{prefix}/login"' in home.text and f'href="{prefix}/private"' in home.text
        assert browser.cookies.jar and next(iter(browser.cookies.jar)).path == f"{prefix}/"

        r = browser.get(f"{prefix}/private")
        assert r.status_code == 302
        login = same_site(site, r.headers["location"])
        assert login == f"{prefix}/login?next={prefix}/private"
        form = browser.get(login)
        action = re.search(r'action="([^"]+)"', form.text)
        assert action is not None and action.group(1).startswith(f"{prefix}/login")
        r = browser.post(action.group(1).replace("&amp;", "&"), data={"user": "ann"})
        assert r.status_code == 302 and same_site(site, r.headers["location"]) == \
            f"{prefix}/private"
        assert "Hello ann" in browser.get(f"{prefix}/private").text


def test_flask_proxyfix_finds_the_prefix_and_ignores_spoofed_headers(site: Workbench) -> None:
    spoofed = {"X-Forwarded-Prefix": "/evil", "X-Forwarded-Host": "evil.test",
               "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    where = site.http.get("/pf/where", headers=spoofed).json()
    assert where == {"script_root": "/pf", "remote_addr": "127.0.0.1",
                     "url": f"{site.url}/pf/where", "prefix_header": "/pf"}


# --- Django ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", DJANGO)
def test_django_reverse_append_slash_and_admin_login(site: Workbench, prefix: str) -> None:
    index = site.http.get(f"{prefix}/polls/")
    assert index.status_code == 200
    assert f'href="{prefix}/polls/7/"' in index.text
    assert f'href="{prefix}/admin/"' in index.text

    r = site.http.get(f"{prefix}/polls/7")  # APPEND_SLASH
    assert r.status_code == 301 and same_site(site, r.headers["location"]) == \
        f"{prefix}/polls/7/"

    r = site.http.get(f"{prefix}/admin/")
    assert r.status_code == 302
    assert same_site(site, r.headers["location"]) == \
        f"{prefix}/admin/login/?next={prefix}/admin/"
    login = site.http.get(f"{prefix}/admin/login/", params={"next": f"{prefix}/admin/"})
    assert login.status_code == 200
    assert re.search(f'<form action="{prefix}/admin/login/[?]next=[^"]+" method="post"',
                     login.text)
    assert f'name="next" value="{prefix}/admin/"' in login.text


@pytest.mark.parametrize("prefix", DJANGO)
def test_django_csrf_form_post(site: Workbench, prefix: str) -> None:
    with httpx.Client(base_url=site.url, trust_env=False, timeout=30) as browser:
        detail = browser.get(f"{prefix}/polls/8/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', detail.text)
        action = re.search(r'action="([^"]+)"', detail.text)
        assert token is not None and action is not None
        assert action.group(1) == f"{prefix}/polls/8/vote/"
        assert "csrftoken" in browser.cookies

        # The CSRF check is really on: a post without the form's token is refused.
        refused = browser.post(action.group(1), data={"choice": "Tea"})
        assert refused.status_code == 403
        r = browser.post(action.group(1), data={
            "choice": "Tea", "csrfmiddlewaretoken": token.group(1)})
        assert r.status_code == 302
        assert same_site(site, r.headers["location"]) == f"{prefix}/polls/8/results/"


# --- httpbin --------------------------------------------------------------------------------

def test_httpbin_relative_redirects_keep_the_prefix(site: Workbench) -> None:
    r = site.http.get("/bin/redirect/3")
    assert r.status_code == 302
    assert same_site(site, r.headers["location"]) == "/bin/relative-redirect/2"
    r = site.http.get("/bin/redirect/3", follow_redirects=True)
    assert r.status_code == 200 and r.url.path == "/bin/get"
    assert [urlsplit(str(h.url)).path for h in r.history] == [
        "/bin/redirect/3", "/bin/relative-redirect/2", "/bin/relative-redirect/1"]


def test_httpbin_sees_the_gateways_forwarding_headers_only(site: Workbench) -> None:
    sent = site.http.get("/bin/headers?show_env=1", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Prefix": "/evil", "Forwarded": "for=203.0.113.9"}).json()["headers"]
    host = urlsplit(site.url).netloc
    assert sent["X-Forwarded-For"] == "127.0.0.1"
    assert sent["X-Forwarded-Host"] == host
    assert sent["X-Forwarded-Prefix"] == "/bin"
    assert sent["X-Forwarded-Proto"] == "http"
    assert sent["Forwarded"] == f'for=127.0.0.1;host="{host}";proto=http'


def test_every_app_reported_its_interface_once(site: Workbench) -> None:
    """No app needed `app_type`: Flask, Django's WSGIHandler and httpbin were found to be
    WSGI, the rest ASGI, and none of them logged a TypeError from being called wrongly."""
    assert not any("TypeError" in line for line in site.lines + site.errors)
    metrics = site.metrics()
    assert {name: metrics["apps"][name]["state"] for name in PROCESS_APPS} == dict.fromkeys(
        PROCESS_APPS, "healthy")
