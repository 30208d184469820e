"""Static files through the real gateway: safety with raw request lines, content types,
validators, ranges, HEAD, index files, the SPA fallback and large files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.routing.conditional import http_date
from tests.support.harness import ServedGateway, serve_config
from tests.support.routing import get, raw_http

SECRET = b"TOP-SECRET-CONTENT"
DIGITS = b"0123456789abcdefghij"  # 20 bytes, for ranges
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"

CONFIG = r"""
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"^~/static/" = { root = "./site", cache_control = "public, max-age=60" }
"/plain/" = { root = "./site" }
[extensions.config.regex_locations.__default__]
root = "./site"
spa_fallback = true
exclude_patterns = ["/api/*", "*.js", "/assets/"]
"""


def build_site(base: Path) -> Path:
    site = base / "site"
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret2.txt").write_bytes(SECRET)
    for rel, data in {
        "index.html": b"<h1>home</h1>", "app.js": b"console.log(1)", "data.json": b"{}",
        "logo.svg": b"<svg/>", "mod.wasm": b"\0asm", "style.css": b"p{}",
        "digits.txt": DIGITS, ".env": SECRET, ".well-known/security.txt": b"contact",
        "sub/index.html": b"sub index", "noindex/file.txt": b"x",
        "static/file.txt": b"static file", "plain/page.txt": b"plain page",
    }.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.symlink(base / "secret.txt", site / "link-out.txt")
    os.symlink(base / "outside", site / "linkdir")
    os.symlink("app.js", site / "link-in.js")
    os.symlink(base / "outside", site / "static" / "escape")
    return site


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[ServedGateway]:
    build_site(tmp_path)
    async with serve_config(CONFIG, tmp_path) as served:
        yield served


@pytest.fixture
async def client(gw: ServedGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url) as c:
        yield c


# --- safety (raw request lines, so nothing normalises the path first) ----------------------

@pytest.mark.parametrize(("target", "status"), [
    # `..` above the root cannot be normalised: 400, as nginx (also when percent-encoded).
    ("/../secret.txt", 400),
    ("/%2e%2e/secret.txt", 400),
    ("/..%2fsecret.txt", 400),
    ("/%2e%2e%2fsecret.txt", 400),
    ("/%2E%2E%2Fsecret.txt", 400),
    ("/static/../../secret.txt", 400),
    ("/static/%2e%2e/%2e%2e/secret.txt", 400),
    ("/plain/..%2f..%2fsecret.txt", 400),
    ("/secret.txt%00.html", 400),     # an encoded NUL: 400, as nginx
    ("/static/file.txt%00", 400),
    # Stricter than nginx: an encoded separator or a backslash is refused.
    ("/static/..%5c..%5csecret.txt", 403),
    ("/static/..\\..\\secret.txt", 403),
    ("/plain%2fpage.txt", 403),
    ("/link-out.txt", 404),           # symlink to a file outside the root
    ("/linkdir/secret2.txt", 404),    # symlinked directory outside the root
    ("/static/escape/secret2.txt", 404),
    ("/.env", 404),                   # hidden files stay hidden
    ("/static/.env", 404),
    ("/sub/../.env", 404),
])
async def test_never_serves_outside_root(gw: ServedGateway, target: str, status: int) -> None:
    r = await raw_http(gw.port, get(target))
    assert r.status == status
    assert SECRET not in r.body


async def test_absolute_form_target_cannot_traverse(gw: ServedGateway) -> None:
    r = await raw_http(gw.port, get("http://test/../secret.txt"))
    assert r.status in (400, 403, 404) and SECRET not in r.body


async def test_symlink_inside_root_and_well_known_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/link-in.js")
    assert (r.status_code, r.content) == (200, b"console.log(1)")
    r = await client.get("/.well-known/security.txt")
    assert (r.status_code, r.content) == (200, b"contact")


# --- mapping, types, index files ------------------------------------------------------------

@pytest.mark.parametrize(("path", "ctype"), [
    ("/app.js", "application/javascript; charset=utf-8"),
    ("/data.json", "application/json; charset=utf-8"),
    ("/logo.svg", "image/svg+xml; charset=utf-8"),
    ("/mod.wasm", "application/wasm"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
    ("/digits.txt", "text/plain; charset=utf-8"),
])
async def test_content_types(client: httpx.AsyncClient, path: str, ctype: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype


async def test_root_is_nginx_root_not_alias(client: httpx.AsyncClient) -> None:
    # the whole path is appended to the root: /static/file.txt -> site/static/file.txt
    r = await client.get("/static/file.txt")
    assert (r.status_code, r.text) == (200, "static file")
    assert r.headers["cache-control"] == "public, max-age=60"
    assert (await client.get("/plain/page.txt")).text == "plain page"
    assert "cache-control" not in (await client.get("/plain/page.txt")).headers


async def test_index_file_and_directory_redirect(client: httpx.AsyncClient) -> None:
    r = await client.get("/sub/")
    assert (r.status_code, r.text) == (200, "sub index")
    r = await client.get("/sub?x=1")
    assert (r.status_code, r.headers["location"]) == (301, "/sub/?x=1")
    r = await client.get("/")
    assert r.text == "<h1>home</h1>"
    # a file asked for as a directory is not found
    assert (await client.get("/plain/page.txt/")).status_code == 404
    # a directory without index under a non-SPA location is a 404
    assert (await client.get("/plain/")).status_code == 404


@pytest.mark.parametrize("target", ["//sub", "///sub", "/./sub", "/%2e/sub", "/x/../sub",
                                    "/static/../sub", "/sub/../sub"])
async def test_directory_redirect_stays_on_this_host(gw: ServedGateway, target: str) -> None:
    # `Location: //sub/` would send a browser to a host named "sub" (an open redirect); nginx
    # redirects to the normalised path.
    r = await raw_http(gw.port, get(target + "?x=1"))
    assert (r.status, r.headers["location"]) == (301, "/sub/?x=1")


async def test_paths_are_normalised_before_the_lookup(gw: ServedGateway) -> None:
    r = await raw_http(gw.port, get("//static//./file.txt"))
    # the ^~/static/ location took it (its Cache-Control), on the normalised path
    assert (r.status, r.body, r.headers["cache-control"]) == (200, b"static file",
                                                              "public, max-age=60")
    r = await raw_http(gw.port, get("/static/../sub/%69ndex.html"))
    assert (r.status, r.body) == (200, b"sub index")


async def test_methods_other_than_get_and_head(client: httpx.AsyncClient) -> None:
    r = await client.post("/app.js", content=b"x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert (await client.delete("/static/file.txt")).status_code == 405


# --- SPA fallback ---------------------------------------------------------------------------

async def test_spa_fallback(client: httpx.AsyncClient) -> None:
    for path in ("/some/client/route", "/noindex/", "/users/42"):
        r = await client.get(path)
        assert (r.status_code, r.text) == (200, "<h1>home</h1>"), path
        assert r.headers["content-type"] == "text/html; charset=utf-8"
    # existing files still win
    assert (await client.get("/app.js")).text == "console.log(1)"


@pytest.mark.parametrize("path", ["/api/users", "/api/", "/missing.js", "/deep/x/missing.js",
                                  "/assets/logo.png"])
async def test_spa_fallback_respects_exclude_patterns(client: httpx.AsyncClient,
                                                      path: str) -> None:
    assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize("target", ["//api/users", "/x/../api/users", "/%61pi/users",
                                    "//assets//logo.png"])
async def test_exclude_patterns_see_the_normalised_path(gw: ServedGateway, target: str) -> None:
    r = await raw_http(gw.port, get(target))
    assert r.status == 404, target  # not the app shell


# --- validators and conditional requests ------------------------------------------------------

async def test_etag_and_last_modified(client: httpx.AsyncClient, tmp_path: Path) -> None:
    r = await client.get("/digits.txt")
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    assert etag.startswith('"')
    assert modified == http_date(int((tmp_path / "site" / "digits.txt").stat().st_mtime))
    assert r.headers["accept-ranges"] == "bytes"

    for inm in (etag, f'"nope", {etag}', "W/" + etag, "*"):
        r = await client.get("/digits.txt", headers={"if-none-match": inm})
        assert (r.status_code, r.content) == (304, b""), inm
        assert r.headers["etag"] == etag
    r = await client.get("/digits.txt", headers={"if-none-match": '"nope"'})
    assert r.status_code == 200

    r = await client.get("/digits.txt", headers={"if-modified-since": modified})
    assert r.status_code == 304
    r = await client.get("/digits.txt", headers={"if-modified-since": EPOCH})
    assert r.status_code == 200
    # If-None-Match wins over If-Modified-Since
    r = await client.get("/digits.txt", headers={"if-none-match": '"nope"',
                                                 "if-modified-since": modified})
    assert r.status_code == 200


async def test_etag_changes_when_file_changes(client: httpx.AsyncClient, tmp_path: Path) -> None:
    first = (await client.get("/digits.txt")).headers["etag"]
    path = tmp_path / "site" / "digits.txt"
    path.write_bytes(DIGITS + b"!")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    r = await client.get("/digits.txt", headers={"if-none-match": first})
    assert (r.status_code, r.content) == (200, DIGITS + b"!")


# --- ranges -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "body", "content_range"), [
    ("bytes=0-4", DIGITS[:5], "bytes 0-4/20"),
    ("bytes=15-", DIGITS[15:], "bytes 15-19/20"),
    ("bytes=-3", DIGITS[-3:], "bytes 17-19/20"),
    ("bytes=18-99", DIGITS[18:], "bytes 18-19/20"),
])
async def test_range(client: httpx.AsyncClient, header: str, body: bytes,
                     content_range: str) -> None:
    r = await client.get("/digits.txt", headers={"range": header})
    assert r.status_code == 206
    assert r.content == body
    assert r.headers["content-range"] == content_range
    assert r.headers["content-length"] == str(len(body))


async def test_range_unsatisfiable(client: httpx.AsyncClient) -> None:
    # past the end, or malformed (nginx answers 416 to both)
    for header in ("bytes=20-", "bytes=100-200", "bytes=-0", "bytes=x-y", "bytes=5-1"):
        r = await client.get("/digits.txt", headers={"range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == "bytes */20"


async def test_multiple_or_other_unit_ranges_get_the_whole_file(
        client: httpx.AsyncClient) -> None:
    for header in ("bytes=0-1,5-6", "lines=1-2"):
        r = await client.get("/digits.txt", headers={"range": header})
        assert (r.status_code, r.content) == (200, DIGITS), header


async def test_if_range(client: httpx.AsyncClient) -> None:
    r = await client.get("/digits.txt")
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    for validator in (etag, modified):
        r = await client.get("/digits.txt", headers={"range": "bytes=0-1", "if-range": validator})
        assert (r.status_code, r.content) == (206, b"01")
    for stale in ('"old"', "W/" + etag, EPOCH):
        r = await client.get("/digits.txt", headers={"range": "bytes=0-1", "if-range": stale})
        assert (r.status_code, r.content) == (200, DIGITS)


# --- HEAD ---------------------------------------------------------------------------------------

async def test_head_has_headers_and_no_body(gw: ServedGateway) -> None:
    r = await raw_http(gw.port, get("/digits.txt", method="HEAD"))
    assert r.status == 200
    assert r.headers["content-length"] == "20"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "etag" in r.headers and "last-modified" in r.headers
    # raw_http reads to EOF after a HEAD, so any body bytes would show up here
    assert r.body == b""
    r = await raw_http(gw.port, get("/digits.txt", "Range: bytes=2-3", method="HEAD"))
    assert (r.status, r.headers["content-range"], r.body) == (206, "bytes 2-3/20", b"")


# --- a large file -------------------------------------------------------------------------------

async def test_large_file_streams_intact(tmp_path: Path) -> None:
    build_site(tmp_path)
    blob = os.urandom(1024 * 1024) * 20  # 20 MiB
    (tmp_path / "site" / "big.bin").write_bytes(blob)
    async with serve_config(CONFIG, tmp_path) as gw, httpx.AsyncClient(timeout=30) as client:
        digest = hashlib.sha256()
        size = 0
        async with client.stream("GET", gw.url + "/big.bin") as r:
            assert r.status_code == 200
            assert r.headers["content-length"] == str(len(blob))
            assert r.headers["content-type"] == "application/octet-stream"
            async for chunk in r.aiter_raw():
                digest.update(chunk)
                size += len(chunk)
        assert size == len(blob)
        assert digest.hexdigest() == hashlib.sha256(blob).hexdigest()
        start = 7 * 1024 * 1024 + 123
        r = await client.get(gw.url + "/big.bin",
                             headers={"range": f"bytes={start}-{start + 200_000}"})
        assert r.status_code == 206 and r.content == blob[start:start + 200_001]
