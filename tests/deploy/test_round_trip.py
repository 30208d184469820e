"""The exported nginx.conf, run by real nginx in front of the same app processes the workbench
runs, answers a battery of requests as the gateway does.

nginx is the oracle for nginx semantics: every request goes to both, and the status, the
body and the headers the project sets must agree. The battery is generated from the
project's locations (each pattern's own path, a case variant, a near miss), plus what the
extensions promise: security headers, IP refusal through a trusted proxy's X-Forwarded-For,
CORS preflights, a rate-limit burst, compression, static conditional and range requests,
a WebSocket and a Server-Sent Events stream. Error bodies are nginx's own pages, as the
report says, so only their status and headers are compared.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.deploy import NGINX, Nginx, export, need
from tests.support.harness import ROOT, free_port, free_port_range
from tests.support.integration import Project, WorkbenchFactory, project_text

pytestmark = pytest.mark.slow

ORIGIN = "https://ok.example"
#: Headers the project sets (or the gateway promises) and nginx must set the same way.
COMPARED = (
    "content-type", "cache-control", "location", "content-range",
    "last-modified", "content-encoding", "retry-after", "www-authenticate",
    "x-frame-options", "x-content-type-options", "referrer-policy",
    "cross-origin-opener-policy", "permissions-policy", "x-custom",
    "access-control-allow-origin", "access-control-allow-credentials",
    "access-control-allow-methods", "access-control-allow-headers",
    "access-control-max-age", "access-control-expose-headers",
)
ROUTES = {
    "=/exact": {"return": "200 exact answer"},
    "^~/assets/": {"root": "./static"},
    "~*\\.(css|js)$": {"root": "./static", "cache_control": "max-age=60"},
    "~^/re/(?P<rest>[a-z]+)$": {"return": "200 regex got {rest}"},
    "/prefix": {"return": "200 plain prefix"},
    "/framed": {"return": "200 framed", "headers": ["X-Frame-Options: SAMEORIGIN",
                                                    "X-Custom: one"]},
    "=/moved": {"return": "301 /exact"},
    "/private": {"return": "200 members only"},
    # Under the app's path: the app comes first in the pipeline, so this is never used.
    "=/app/shadowed": {"return": "200 never answered"},
    "__default__": {"root": "./static", "spa_fallback": True, "exclude_patterns": ["/nospa/"]},
}
EXTENSIONS = """
[[extensions]]
type = "security"
[extensions.config]
blocked_ips = ["10.0.0.50", "192.0.2.0/24"]
trusted_proxies = ["127.0.0.1"]

[[extensions]]
type = "cors"
[extensions.config]
allow_origins = ["https://ok.example"]
allow_credentials = true
allow_headers = ["X-Custom"]
expose_headers = ["X-Request-ID"]

[[extensions]]
type = "rate_limit"
[extensions.config]
requests_per_minute = 6
burst_size = 3
trusted_proxies = ["127.0.0.1"]

[[extensions]]
type = "auth"
[extensions.config]
method = "basic"
realm = "members"
paths = ["/private"]
users = { alice = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=" }  # "secret"

[[extensions]]
type = "compression"
[extensions.config]
minimum_size = 1024
"""


def _static(folder: Path) -> None:
    static = folder / "static"
    (static / "docs").mkdir(parents=True)
    (static / "assets").mkdir()
    (static / "index.html").write_text("<!doctype html><title>shell</title>app shell\n")
    (static / "docs" / "index.html").write_text("<p>docs</p>\n")
    (static / "app.js").write_text("console.log('app');\n")
    (static / "style.css").write_text("body { color: black; }\n")
    (static / "assets" / "a.js").write_text("export const a = 1;\n")
    (static / "data.txt").write_text("".join(f"line {i:04d} of the data file\n"
                                             for i in range(200)))
    (static / ".secret").write_text("never served\n")


class Pair:
    """The same request to the gateway and to nginx; each client has its own address."""

    def __init__(self, gateway: str, nginx: str) -> None:
        # gzip is the one encoding stock nginx has (the report says so).
        self.clients = {name: httpx.Client(base_url=url, trust_env=False, timeout=20,
                                           headers={"Accept-Encoding": "gzip"})
                        for name, url in (("gateway", gateway), ("nginx", nginx))}
        self.urls = {"gateway": gateway, "nginx": nginx}
        self._ips = itertools.count(1)
        self.differences: list[str] = []

    def client_ip(self) -> str:
        """A fresh client address (named by the trusted proxy, 127.0.0.1), so the rate
        limit never interferes with requests that are not about it."""
        n = next(self._ips)
        return f"203.0.113.{n % 250 + 1}" if n < 250 else f"198.18.{n // 250}.{n % 250 + 1}"

    def both(self, method: str, path: str, headers: dict[str, str] | None = None,
             ip: str | None = None) -> dict[str, httpx.Response]:
        ip = ip or self.client_ip()
        sent = {"X-Forwarded-For": ip, **(headers or {})}
        return {name: c.request(method, path, headers=sent) for name, c in self.clients.items()}

    def compare(self, method: str, path: str, headers: dict[str, str] | None = None, *,
                ip: str | None = None, body: bool = True) -> dict[str, httpx.Response]:
        answers = self.both(method, path, headers, ip)
        g, n = answers["gateway"], answers["nginx"]
        what = f"{method} {path} {headers or ''}"
        if g.status_code != n.status_code:
            self.differences.append(f"{what}: status {g.status_code} != {n.status_code}")
            return answers
        if g.status_code == 416:
            return answers  # nginx's own page; REPORT.md says so
        if body and g.status_code < 300 and g.content != n.content:
            self.differences.append(f"{what}: body {g.content[:80]!r} != {n.content[:80]!r}")
        for name in COMPARED:
            if name == "content-type" and 300 <= g.status_code < 400:
                continue  # nginx's redirects carry a small HTML page (REPORT.md says so)
            gv, nv = _header(g, name), _header(n, name)
            if gv != nv:
                self.differences.append(f"{what}: {name} {gv!r} != {nv!r}")
        rid = (headers or {}).get("X-Request-ID")
        if rid and not g.headers.get("x-request-id") == n.headers.get("x-request-id") == rid:
            self.differences.append(f"{what}: x-request-id not returned as sent")
        if _vary(g) != _vary(n):
            self.differences.append(f"{what}: vary {_vary(g)} != {_vary(n)}")
        return answers

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def _header(r: httpx.Response, name: str) -> str | None:
    values = r.headers.get_list(name)
    if not values:
        return None
    value = ", ".join(values)
    if name == "www-authenticate":  # nginx's has no charset parameter: REPORT.md says so
        value = value.replace(', charset="UTF-8"', "")
    if name == "content-type":
        value = value.replace(" ", "").lower()
    return value


def _vary(r: httpx.Response) -> set[str]:
    return {v.strip().lower() for line in r.headers.get_list("vary") for v in line.split(",")
            if v.strip()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    need(NGINX, "nginx")
    folder = tmp_path_factory.mktemp("roundtrip")
    _static(folder)
    gateway_port, nginx_port, app_port = free_port(), free_port(), free_port()
    # uvicorn: nginx strips the prefix for it, as the gateway does for every app process.
    app = {"name": "echo", "path": "/app", "app_path": "tests.apps.basic:app",
           "module_path": str(ROOT), "port": app_port, "backend": "uvicorn"}
    project = Project(folder, gateway_port, free_port_range())
    text = project_text(port=gateway_port, port_range=project.port_range, apps=[app],
                        routes=ROUTES)
    # The extensions go first, the apps and routes after them, as a user would order them.
    head, _, tail = text.partition("# apps run in their own processes")
    project.write(head + EXTENSIONS + "\n# apps run in their own processes" + tail)

    factory = WorkbenchFactory()
    server: Nginx | None = None
    clients: Pair | None = None
    try:
        factory(project, apps=["echo"])
        out = folder / "deploy"
        # The systemd target's nginx.conf is the one that runs on the apps' own machine.
        export(project.config, "systemd", out, port=nginx_port)
        server = Nginx(out / "nginx.conf", folder / "nginx")
        clients = Pair(f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{nginx_port}")
        server.wait_answering(clients.clients["nginx"])
        yield clients
        assert server.proc.poll() is None, server.error_log()
    finally:
        if clients is not None:
            clients.close()
        if server is not None:
            server.stop()
        factory.close()


def location_paths() -> list[str]:
    """Paths that exercise each location's match, case variants and near misses."""
    paths = ["/", "/health"]
    for pattern in ROUTES:
        if pattern == "__default__":
            continue
        bare = pattern.lstrip("=^~*")
        if bare.startswith("\\.") or bare.startswith("^"):
            continue
        paths += [bare, bare.upper(), bare + "/", bare + "/more"]
    paths += ["/re/abc", "/re/ABC", "/RE/abc", "/re/abc/x", "/app.js", "/APP.JS",
              "/style.css", "/assets/a.js", "/assets/A.js", "/assets/missing.js",
              "/deep/link/page", "/nospa/x", "/docs", "/docs/", "/.secret",
              "/app", "/app/", "/app/echo/x?q=1", "/APP/echo", "/application", "/app/echo/x.js",
              "/exact?x=1", "/data.txt"]
    return list(dict.fromkeys(paths))


def test_every_location_answers_alike(pair: Pair) -> None:
    for path in location_paths():
        for method in ("GET", "HEAD"):
            # The echo app's body names the proxy's own address: compared field by field.
            answers = pair.compare(method, path, body=not path.startswith("/app"))
            statuses = {r.status_code for r in answers.values()}
            if method == "GET" and path.startswith("/app/echo") and statuses == {200}:
                _same_echo(answers)
    assert not pair.differences, "\n".join(pair.differences)


def _same_echo(answers: dict[str, httpx.Response]) -> None:
    """The app saw the same request through both: path, prefix, query, its own pid."""
    g, n = (json.loads(answers[k].content) for k in ("gateway", "nginx"))
    for key in ("method", "path", "root_path", "query", "pid"):
        assert g[key] == n[key], (key, g[key], n[key])
    assert g["headers"].get("x-forwarded-proto") == n["headers"].get("x-forwarded-proto")
    assert n["headers"].get("x-forwarded-prefix") == "/app"
    if "x-forwarded-prefix" in g["headers"]:  # SPEC §3; the gateway sends it too
        assert g["headers"]["x-forwarded-prefix"] == "/app"


def test_request_ids_and_traceparent_pass_through(pair: Pair) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answers = pair.both("GET", "/app/echo/ids", {"X-Request-ID": "rt-1", "traceparent": tp})
    for name, r in answers.items():
        assert r.headers["x-request-id"] == "rt-1", name
        assert r.headers["traceparent"] == tp, name
        seen = r.json()["headers"]
        assert seen["x-request-id"] == "rt-1" and seen["traceparent"] == tp, name
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    for headers in ({"X-Request-ID": "bad id with spaces"}, {}):
        for name, r in pair.both("GET", "/exact", headers).items():
            assert uuid.fullmatch(r.headers["x-request-id"]), (name, r.headers)


def test_basic_auth_guards_its_paths_alike(pair: Pair) -> None:
    good = "Basic " + base64.b64encode(b"alice:secret").decode()
    bad = "Basic " + base64.b64encode(b"alice:wrong").decode()
    for path in ("/private", "/private/x", "/privateer", "/exact"):
        for headers in ({}, {"Authorization": good}, {"Authorization": bad},
                        {"Authorization": "Bearer nope"}):
            pair.compare("GET", path, {**headers, "X-Request-ID": "rt-auth"})
    assert not pair.differences, "\n".join(pair.differences)


def test_static_conditional_and_range_requests(pair: Pair) -> None:
    for name, client in pair.clients.items():
        # Uncompressed, so the ETag is a strong one that If-Range may use.
        client.headers["Accept-Encoding"] = "identity"
        first = client.get("/data.txt", headers={"X-Forwarded-For": pair.client_ip()})
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        for headers, status in (({"If-None-Match": etag}, 304),
                                ({"If-Modified-Since": modified}, 304),
                                ({"Range": "bytes=0-9"}, 206),
                                ({"Range": "bytes=-5"}, 206),
                                ({"Range": "bytes=999999-"}, 416),
                                ({"Range": "bytes=0-9", "If-Range": etag}, 206),
                                ({"Range": "bytes=0-9", "If-Range": '"other"'}, 200)):
            r = client.get("/data.txt", headers={**headers,
                                                 "X-Forwarded-For": pair.client_ip()})
            assert r.status_code == status, (name, headers, r.status_code)
        client.headers["Accept-Encoding"] = "gzip"
    for headers in ({"Range": "bytes=0-9"}, {"Range": "bytes=-5"}, {"Range": "bytes=999999-"},
                    {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}):
        pair.compare("GET", "/data.txt", headers)
    assert not pair.differences, "\n".join(pair.differences)


def test_security_headers_refusals_and_cors(pair: Pair) -> None:
    # Refused by address (a single one and a CIDR), named by the trusted proxy.
    for ip in ("10.0.0.50", "192.0.2.7"):
        for path in ("/exact", "/app/echo", "/nope", "/data.txt"):
            pair.compare("GET", path, ip=ip)
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    cases = [preflight,
             {**preflight, "Access-Control-Request-Headers": "x-custom, content-type"},
             {**preflight, "Access-Control-Request-Headers": "x-other"},
             {**preflight, "Access-Control-Request-Method": "TRACE"},
             {**preflight, "Origin": "https://evil.example"}]
    for headers in cases:
        for path in ("/app/echo", "/exact", "/data.txt"):
            pair.compare("OPTIONS", path, headers)
    for origin in (ORIGIN, "https://evil.example"):
        for path in ("/app/echo/cors", "/exact", "/style.css", "/missing"):
            pair.compare("GET", path, {"Origin": origin}, body=False)
    pair.compare("GET", "/app/echo/gz?" + "x" * 2000, {"Accept-Encoding": "gzip"}, body=False)
    assert not pair.differences, "\n".join(pair.differences)


def test_a_rate_limit_burst_is_cut_alike(pair: Pair) -> None:
    statuses = {}
    for name, client in pair.clients.items():
        ip = "198.51.100.7"
        statuses[name] = [client.get("/exact", headers={"X-Forwarded-For": ip}).status_code
                          for _ in range(6)]
        last = client.get("/exact", headers={"X-Forwarded-For": ip})
        assert last.status_code == 429 and last.headers["retry-after"] == "10", name
    assert statuses["gateway"] == statuses["nginx"] == [200, 200, 200, 429, 429, 429]


def test_websocket_and_event_stream_pass_through(pair: Pair) -> None:
    async def talk(url: str) -> list[str]:
        async with websockets.connect(url.replace("http", "ws") + "/app/ws") as ws:
            got = []
            for text in ("one", "two"):
                await ws.send(text)
                got.append(str(await ws.recv()))
            return got

    for name, url in pair.urls.items():
        assert asyncio.run(talk(url)) == ["echo: one", "echo: two"], name
    for name, client in pair.clients.items():
        with client.stream("GET", "/app/sse?n=3&gap=0.3",
                           headers={"X-Forwarded-For": pair.client_ip()}) as r:
            assert r.headers["content-type"].startswith("text/event-stream"), name
            assert "content-encoding" not in r.headers, name
            events, seen = [], []
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                    seen.append(time.monotonic())
            ended = time.monotonic()
        assert events == ["data: event 0", "data: event 1", "data: event 2"], name
        # Each event arrives as the app sends it, not held back to the end of the stream.
        assert ended - seen[0] >= 0.5, (name, ended - seen[0])
