"""Pure pieces of routing: validators and ranges, path safety, content types, templates,
and proxy_pass URI rules. No sockets; the gateway tests cover the wiring."""

from __future__ import annotations

import pytest

from gateway.routing.actions import HeaderRules, ReturnAction, Template, header_escape
from gateway.routing.conditional import (
    ByteRange,
    Unsatisfiable,
    http_date,
    if_range_allows,
    make_etag,
    none_match,
    not_modified,
    parse_http_date,
    parse_range,
)
from gateway.routing.locations import LocationTable
from gateway.routing.mediatypes import content_type
from gateway.routing.safepath import HiddenPath, UnsafePath, safe_segments
from gateway.routing.upstream import ProxyPass, parse_proxy_url
from gateway.routing.uri import request_uri

# --- ranges --------------------------------------------------------------------------------


# nginx's answers (ngx_http_range_parse), checked against nginx in test_routing_nginx.py.
@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", ByteRange(0, 9)),
    ("bytes=10-", ByteRange(10, 99)),
    ("bytes=-5", ByteRange(95, 99)),
    ("bytes=-500", ByteRange(0, 99)),
    ("bytes=90-200", ByteRange(90, 99)),
    ("bytes= 3 - 4 ", ByteRange(3, 4)),
    ("BYTES=1-1", ByteRange(1, 1)),
])
def test_parse_range(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=0-1,5-6", 100),  # several ranges: whole file
    ("items=0-1", 100), ("bytes = 3 - 4", 100), ("bytes", 100),
    ("bytes=0-", 0), ("bytes=-3", 0), ("bytes=0-0", 0),  # from 0 of an empty file: whole
])
def test_parse_range_ignored(header: str, size: int) -> None:
    assert parse_range(header, size) is None


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=-0", 100), ("bytes=5-", 0),
    ("bytes=abc", 100), ("bytes=5-1", 100), ("bytes=-", 100), ("bytes=- 3", 100),
    ("bytes=１-２", 100), ("bytes=99999999999999999999-", 100),
])
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_byte_range_content_range() -> None:
    assert ByteRange(2, 5).content_range(10) == "bytes 2-5/10"
    assert ByteRange(2, 5).length == 4


# --- validators ----------------------------------------------------------------------------

ETAG = make_etag(1_700_000_000_123_456_789, 1234)
MTIME = 1_700_000_000


def test_etag_is_strong_and_changes_with_size_and_time() -> None:
    assert ETAG.startswith('"') and ETAG.endswith('"')
    assert make_etag(1, 2) != make_etag(1, 3) != make_etag(2, 3)


@pytest.mark.parametrize(("header", "result"), [
    (ETAG, True), ("W/" + ETAG, True), ('"x", ' + ETAG, True), ("*", True),
    ('"other"', False), ("", False),
])
def test_if_none_match(header: str, result: bool) -> None:
    assert none_match(header, ETAG) is result


def test_if_modified_since() -> None:
    assert not_modified({"if-modified-since": http_date(MTIME)}, ETAG, MTIME)
    assert not_modified({"if-modified-since": http_date(MTIME + 10)}, ETAG, MTIME)
    assert not not_modified({"if-modified-since": http_date(MTIME - 1)}, ETAG, MTIME)
    assert not not_modified({"if-modified-since": "yesterday"}, ETAG, MTIME)


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    headers = {"if-none-match": '"nope"', "if-modified-since": http_date(MTIME)}
    assert not not_modified(headers, ETAG, MTIME)


def test_http_dates_round_trip_in_all_three_formats() -> None:
    assert parse_http_date(http_date(MTIME)) == MTIME
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_http_date("garbage") is None


def test_if_range() -> None:
    assert if_range_allows(ETAG, ETAG, MTIME)
    assert not if_range_allows("W/" + ETAG, ETAG, MTIME)  # weak never validates a range
    assert not if_range_allows('"old"', ETAG, MTIME)
    assert if_range_allows(http_date(MTIME), ETAG, MTIME)
    assert not if_range_allows(http_date(MTIME - 5), ETAG, MTIME)


# --- path safety ---------------------------------------------------------------------------


def test_safe_segments_plain() -> None:
    assert safe_segments("/a/b/c.txt") == ["a", "b", "c.txt"]
    assert safe_segments("/a/b/") == ["a", "b"]
    assert safe_segments("/") == []
    assert safe_segments("/.well-known/security.txt") == [".well-known", "security.txt"]
    assert safe_segments("/.env", allow_hidden=True) == [".env"]
    assert safe_segments("/a..b/c..") == ["a..b", "c.."]


@pytest.mark.parametrize(("path", "raw"), [
    # The stricter answers: nginx would serve these as if the separator were written.
    ("/secret", b"/x/..%2fsecret"),
    ("/a/b", b"/a%2Fb"),
    ("/static/..\\..\\secret", b"/static/..%5c..%5csecret"),
    ("/a\\b", None),
    ("/a\nb", b"/a%0Ab"),
    ("/a\x7fb", b"/a%7fb"),
])
def test_safe_segments_refuses_escapes(path: str, raw: bytes | None) -> None:
    with pytest.raises(UnsafePath):
        safe_segments(path, raw)


@pytest.mark.parametrize("path", ["/.env", "/.git/config", "/a/.hidden/b"])
def test_safe_segments_hides_dotfiles(path: str) -> None:
    with pytest.raises(HiddenPath):
        safe_segments(path)


# --- content types -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ctype"), [
    ("a.js", "application/javascript; charset=utf-8"),
    ("a.mjs", "application/javascript; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.svg", "image/svg+xml; charset=utf-8"),
    ("a.wasm", "application/wasm"),
    ("a.HTML", "text/html; charset=utf-8"),
    ("a.css", "text/css; charset=utf-8"),
    ("a.png", "image/png"),
    ("a.tar", "application/x-tar"),
    ("a.unknownext", "application/octet-stream"),
    ("Makefile", "application/octet-stream"),
])
def test_content_type(name: str, ctype: str) -> None:
    assert content_type(name) == ctype


# --- templates, headers, return ------------------------------------------------------------


def test_template_substitutes_known_names_only() -> None:
    t = Template("/x/{a}/{b}/{missing}")
    assert t.render({"a": "1", "b": "two"}, str) == "/x/1/two/{missing}"
    assert Template("plain").render({"a": "1"}, str) == "plain"


def test_header_escape_blocks_injection() -> None:
    assert header_escape("ok value") == "ok value"
    assert header_escape("a\r\nSet-Cookie: x") == "a%0D%0ASet-Cookie: x"
    assert header_escape("é") == "%C3%A9"


def test_header_rules_parse_and_refuse_bad_names() -> None:
    rules = HeaderRules(["X-User: {user}", "Cache-Control:no-store"])
    assert rules.render({"user": "ann"}) == [(b"x-user", b"ann"),
                                             (b"cache-control", b"no-store")]
    with pytest.raises(ValueError):
        HeaderRules(["Bad Name: x"])


def test_return_action_parsing() -> None:
    r = ReturnAction("200 pong")
    assert (r.status, r.text.text, r.content_type) == (200, "pong", b"text/plain; charset=utf-8")
    assert ReturnAction("204").text.text == ""
    assert ReturnAction("200 {}", "application/json").content_type == b"application/json"
    with pytest.raises(ValueError):
        ReturnAction("099 nope")


# --- proxy_pass URI rules ------------------------------------------------------------------


def _target(url: str, pattern: str, path: str, *, query: bytes = b"",
            raw: bytes | None = None):  # type: ignore[no-untyped-def]
    scope = {"path": path, "query_string": query}
    if raw is not None:
        scope["raw_path"] = raw
    uri = request_uri(scope)
    m = LocationTable([(pattern, None)]).select(uri)
    assert m is not None
    proxy = ProxyPass(url, regex=pattern.startswith("~"), timeout=3.0, name=pattern)
    return proxy.target(scope, m, uri)  # type: ignore[arg-type]


def test_proxy_without_path_passes_raw_request_path() -> None:
    t = _target("http://127.0.0.1:9100", "/api/", "/api/a b", query=b"q=1",
                raw=b"/api/a%20b")
    assert (t.host, t.port, t.path, t.query, t.timeout) == ("127.0.0.1", 9100, "/api/a%20b",
                                                            b"q=1", 3.0)


def test_proxy_without_path_sends_the_target_as_written() -> None:
    # Not normalised, not re-encoded: nginx's unparsed_uri. Only what a request line cannot
    # carry is escaped (some servers pass raw UTF-8 through).
    assert _target("http://h:1", "/", "//a/../b", raw=b"//a/%2e%2E/b").path == "//a/%2e%2E/b"
    assert _target("http://h:1", "/", "/caf\u00e9", raw=b"/caf\xc3\xa9").path == "/caf%C3%A9"
    assert _target("http://h:1", "/", "/x", raw=b"http://host/x").path == "/x"


def test_proxy_with_path_replaces_the_prefix() -> None:
    assert _target("http://h:1/v1/", "/api/", "/api/users").path == "/v1/users"
    assert _target("http://h:1/v1/", "^~/api/", "/api/a%b").path == "/v1/a%25b"
    # The normalised path, re-escaped as nginx escapes a URI.
    assert _target("http://h:1/v1/", "/api/", "//api/./x/../a b?#[]",
                   raw=b"//api/./x/../a%20b%3F%23[]").path == "/v1/a%20b%3F%23[]"
    assert _target("http://h:1/", "__default__", "/x/y").path == "/x/y"
    assert _target("http://h:1/app/", "__default__", "/x").path == "/app/x"
    assert _target("http://h:1/pong", "=/ping", "/ping").path == "/pong"


def test_proxy_regex_uses_substituted_path() -> None:
    t = _target("http://h:1/v2/{rest}", "~^/legacy/(?P<rest>.*)$", "/legacy/a/b c?",
                query=b"x=1", raw=b"/legacy/a/b%20c%3f")
    assert t.path == "/v2/a/b%20c%3F" and t.query == b"x=1"


def test_proxy_url_query_replaces_the_client_query() -> None:
    t = _target("http://h:1/s?from={who}", "~^/u/(?P<who>\\w+)", "/u/ann", query=b"x=1")
    assert t.path == "/s" and t.query == b"from=ann"


def test_proxy_url_checks() -> None:
    assert parse_proxy_url("http://example.com").port == 80
    assert parse_proxy_url("http://h:81").path is None
    for bad in ("https://h/", "ftp://h/", "http://:80/", "http://h:99999/", "http://u:p@h/"):
        with pytest.raises(ValueError):
            parse_proxy_url(bad)
    with pytest.raises(ValueError):
        ProxyPass("http://h:{port}/", regex=True, timeout=1, name="x")
