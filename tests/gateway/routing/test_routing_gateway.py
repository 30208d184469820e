"""Routing through the real gateway: location priorities, return, headers, no match."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.errors import ConfigError
from tests.support.harness import serve_config, wait_until
from tests.support.routing import DEADLINE, get, raw_http

# Every location answers with its own name, so a response says which location won.
PRIORITIES = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"__default__" = { return = "200 default" }
'~\.js$' = { return = "200 regex-js" }
'~^/api/(?P<ver>v\d+)/' = { return = "200 regex-api-{ver}" }
'~^/api/' = { return = "200 regex-api" }
'~*\.PNG$' = { return = "200 regex-png-nocase" }
"=/exact" = { return = "200 exact" }
"/exact" = { return = "200 prefix-exact" }
'~^/exact' = { return = "200 regex-exact" }
"^~/static/" = { return = "200 stop-static" }
"/static/deep/" = { return = "200 prefix-static-deep" }
"/docs/" = { return = "200 prefix-docs" }
"/docs/guide/" = { return = "200 prefix-docs-guide" }
"=/" = { return = "200 exact-root" }
"""


@pytest.mark.parametrize(("path", "winner"), [
    ("/exact", "exact"),                      # = beats regex and prefix
    ("/exact/more", "regex-exact"),           # regex beats plain prefix
    ("/static/app.js", "stop-static"),        # ^~ stops the regex search
    ("/static/deep/app.js", "regex-js"),      # ...unless a longer plain prefix is the longest
    ("/static/deep/x.css", "prefix-static-deep"),
    ("/api/v1/x.js", "regex-js"),             # first regex in file order
    ("/api/v1/users", "regex-api-v1"),
    ("/api/users", "regex-api"),
    ("/img/a.png", "regex-png-nocase"),       # ~* ignores case
    ("/img/a.PnG", "regex-png-nocase"),
    ("/docs/guide/intro", "prefix-docs-guide"),  # longest prefix when no regex matches
    ("/docs/other", "prefix-docs"),
    ("/", "exact-root"),
    ("/unmatched", "default"),
])
async def test_location_priorities(tmp_path: Path, path: str, winner: str) -> None:
    async with serve_config(PRIORITIES, tmp_path) as gw, httpx.AsyncClient() as client:
        r = await client.get(gw.url + path)
        assert (r.status_code, r.text) == (200, winner)


async def test_route_is_recorded_and_counted(tmp_path: Path) -> None:
    async with serve_config(PRIORITIES, tmp_path) as gw, httpx.AsyncClient() as client:
        r = await client.get(gw.url + "/docs/x")
        rid = r.headers["x-request-id"]
        rec = await wait_until(lambda: gw.services.request_log.find(rid), DEADLINE, interval=0.01)
        assert rec.route == "/docs/"
        routing = gw.app.pipeline.members[0]
        assert routing.metrics() == {"locations": {"/docs/": 1}}
        assert "prefixes=5" in repr(routing)


NO_DEFAULT = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/only" = { return = "200 only" }
'~^/re/' = { return = "200 re" }
"""


async def test_no_match_falls_through_to_404(tmp_path: Path) -> None:
    async with serve_config(NO_DEFAULT, tmp_path) as gw, httpx.AsyncClient() as client:
        assert (await client.get(gw.url + "/only")).text == "only"
        r = await client.get(gw.url + "/only/not")
        assert r.status_code == 404
        assert "request id" in r.text


RETURNS = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/json" = { return = '200 {"ok": true}', content_type = "application/json" }
"=/html" = { return = "200 <b>hi</b>", content_type = "text/html" }
"=/teapot" = { return = "418 short and stout" }
"=/empty" = { return = "204" }
"=/gone" = { return = "301 https://example.com/new" }
'~^/old/(?P<rest>.*)$' = { return = "308 /new/{rest}" }
"=/override" = { return = "200 x", headers = ["Content-Type: text/csv"] }
"/hdr/" = { headers = ["X-Only-Headers: 1"] }
[extensions.config.regex_locations.'~^/hello/(?P<name>[^/]+)$']
return = "200 hello {name}"
headers = ["X-Name: {name}", "X-Static: yes"]
"""


async def test_return_actions(tmp_path: Path) -> None:
    async with serve_config(RETURNS, tmp_path) as gw, httpx.AsyncClient() as client:
        r = await client.get(gw.url + "/json")
        assert r.json() == {"ok": True}
        assert r.headers["content-type"] == "application/json"
        r = await client.get(gw.url + "/html")
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        r = await client.post(gw.url + "/teapot", content=b"ignored")
        assert (r.status_code, r.text) == (418, "short and stout")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        r = await client.get(gw.url + "/empty")
        assert (r.status_code, r.content) == (204, b"")
        assert "content-length" not in r.headers
        r = await client.get(gw.url + "/gone")
        assert (r.status_code, r.headers["location"]) == (301, "https://example.com/new")
        r = await client.head(gw.url + "/html")
        assert r.content == b"" and r.headers["content-length"] == "9"


async def test_redirect_substitutes_groups_url_encoded(tmp_path: Path) -> None:
    async with serve_config(RETURNS, tmp_path) as gw:
        r = await raw_http(gw.port, get("/old/a%20b/c%3Fd"))
        assert r.status == 308
        assert r.headers["location"] == "/new/a%20b/c%3Fd"


async def test_headers_with_named_groups(tmp_path: Path) -> None:
    async with serve_config(RETURNS, tmp_path) as gw, httpx.AsyncClient() as client:
        r = await client.get(gw.url + "/hello/ann")
        assert r.text == "hello ann"
        assert r.headers["x-name"] == "ann" and r.headers["x-static"] == "yes"
        r = await client.get(gw.url + "/override")
        assert r.headers.get_list("content-type") == ["text/csv"]


async def test_header_values_cannot_be_injected(tmp_path: Path) -> None:
    async with serve_config(RETURNS, tmp_path) as gw:
        r = await raw_http(gw.port, get("/hello/x%0D%0ASet-Cookie:%20evil=1"))
        assert r.status == 200
        assert "set-cookie" not in r.headers
        assert r.headers["x-name"] == "x%0D%0ASet-Cookie: evil=1"


async def test_headers_only_location_passes_on(tmp_path: Path) -> None:
    async with serve_config(RETURNS, tmp_path) as gw, httpx.AsyncClient() as client:
        r = await client.get(gw.url + "/hdr/x")
        assert r.status_code == 404
        assert r.headers["x-only-headers"] == "1"


async def test_websocket_on_a_return_location_is_refused(tmp_path: Path) -> None:
    import websockets

    async with serve_config(RETURNS, tmp_path) as gw:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}/json", open_timeout=5):
                pass


@pytest.mark.parametrize(("location", "error"), [
    ('"/x/" = { proxy_pass = "http://127.0.0.1:notaport/" }', "bad port"),
    # a redirect to another host must say so with a scheme
    ('"=/x" = { return = "301 //cdn.example/x" }', "names another host"),
    ('"=/x" = { return = "302 \\\\cdn.example/x" }', "names another host"),
])
async def test_bad_action_is_a_config_error(tmp_path: Path, location: str, error: str) -> None:
    cfg = f"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
{location}
"""
    with pytest.raises(ConfigError, match=error):
        async with serve_config(cfg, tmp_path):
            pass


# --- the normalised URI (nginx's $uri) ------------------------------------------------------

DENY = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/admin" = { return = "403" }
"^~/internal/" = { return = "403" }
'~\.php$' = { return = "200 php" }
"/" = { return = "200 open" }
'~^/go(?P<rest>/.*)$' = { return = "302 /{rest}" }
"""


@pytest.mark.parametrize("target", ["/admin", "//admin", "/./admin", "/x/../admin",
                                    "/%2e/admin", "/%2fadmin", "///admin",
                                    "/%61dmin", "/internal/x", "//internal/x",
                                    "/a/%2e%2e/internal/x", "/internal%2fx"])
async def test_deny_rules_cannot_be_dodged(tmp_path: Path, target: str) -> None:
    # The location is chosen on the normalised path, so every spelling of /admin or
    # /internal/... is denied (before: //admin, /./admin, /x/../admin reached "/").
    async with serve_config(DENY, tmp_path) as gw:
        r = await raw_http(gw.port, get(target))
        assert r.status == 403, (target, r.status, r.body)


@pytest.mark.parametrize(("target", "body"), [
    ("/internal/../x.php", b"php"),       # leaves /internal/ once normalised
    ("//x.php", b"php"),
    ("/x.ph%70", b"php"),
    ("/x.php%2f", b"open"),               # ends in / once decoded
    ("/x.php?a=b", b"php"),               # the query is not part of the path
    ("/x.php%3fa=b", b"open"),            # an encoded ? is part of it
])
async def test_regexes_see_the_normalised_path(tmp_path: Path, target: str,
                                               body: bytes) -> None:
    async with serve_config(DENY, tmp_path) as gw:
        r = await raw_http(gw.port, get(target))
        assert (r.status, r.body) == (200, body), target


@pytest.mark.parametrize("target", ["/../x", "/a/../../x", "/%2e%2e/x", "/x%00", "/x%zz",
                                    "/x%", "/x%4", "/admin%00"])
async def test_paths_nginx_refuses_are_400(tmp_path: Path, target: str) -> None:
    async with serve_config(DENY, tmp_path) as gw:
        r = await raw_http(gw.port, get(target))
        assert r.status == 400, target
        assert r.body.startswith(b"400 Bad Request - ") and b"request id" in r.body
        assert r.headers["content-type"] == "text/plain; charset=utf-8"


async def test_redirect_built_from_the_path_stays_on_this_host(tmp_path: Path) -> None:
    async with serve_config(DENY, tmp_path) as gw:
        for target in ("/go//evil.example/x", "/go/%2fevil.example", "/go/%5cevil.example"):
            r = await raw_http(gw.port, get(target))
            assert r.status == 302
            location = r.headers["location"]
            assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
