"""Request-head building: framing decisions and header filtering, without sockets."""

from __future__ import annotations

from gateway.proxy import UpstreamTarget
from gateway.proxy.headers import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_UNKNOWN,
    build_request_head,
)
from tests.support.proxy import make_scope

TARGET = UpstreamTarget("127.0.0.1", 8000, "/p", b"q=1")


def head(method: str, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, int]:
    parts, framing = build_request_head(make_scope(method, headers), TARGET, None)
    return b"".join(parts), framing


def test_get_without_framing_has_no_body():
    raw, framing = head("GET", [(b"host", b"h")])
    assert framing == BODY_NONE
    assert raw.startswith(b"GET /p?q=1 HTTP/1.1\r\nhost: h\r\n")


def test_post_without_framing_is_decided_by_the_first_receive():
    assert head("POST", [(b"host", b"h")])[1] == BODY_UNKNOWN


def test_content_length_is_forwarded():
    raw, framing = head("PUT", [(b"host", b"h"), (b"content-length", b"3")])
    assert framing == BODY_LENGTH and b"content-length: 3\r\n" in raw


def test_transfer_encoding_wins_over_content_length_in_either_order():
    for headers in ([(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
                    [(b"transfer-encoding", b"chunked"), (b"content-length", b"3")]):
        raw, framing = head("POST", [(b"host", b"h"), *headers])
        assert framing == BODY_CHUNKED
        assert b"content-length" not in raw and b"transfer-encoding" not in raw


def test_headers_named_in_connection_are_dropped_wherever_they_appear():
    raw, _ = head("GET", [(b"x-before", b"1"), (b"connection", b"X-Before, x-after"),
                          (b"x-after", b"2"), (b"x-kept", b"3"), (b"host", b"h")])
    assert b"x-before" not in raw and b"x-after" not in raw
    assert b"x-kept: 3\r\n" in raw and b"host: h\r\n" in raw


def test_location_naming_the_apps_own_address_becomes_relative() -> None:
    from gateway.proxy.headers import rewrite_location

    def location(value: bytes) -> bytes:
        return dict(rewrite_location([(b"x", b"1"), (b"location", value)], "127.0.0.1",
                                     9001))[b"location"]

    assert location(b"http://127.0.0.1:9001/api/items?x=1") == b"/api/items?x=1"
    assert location(b"http://127.0.0.1:9001") == b"/"
    assert location(b"http://127.0.0.1:9001?x") == b"/?x"
    # Another port that merely starts the same, the gateway's own address, elsewhere: kept.
    assert location(b"http://127.0.0.1:90012/x") == b"http://127.0.0.1:90012/x"
    assert location(b"http://127.0.0.1:8000/api/x") == b"http://127.0.0.1:8000/api/x"
    assert location(b"/api/x") == b"/api/x"
    headers = [(b"location", b"https://example.com/")]
    assert rewrite_location(headers, "127.0.0.1", 9001) is headers  # nothing copied


def test_forwarding_headers_quote_ipv6_and_keep_a_trusted_chain() -> None:
    from gateway.proxy.headers import Forwarding

    scope = make_scope("GET", [])
    scope["client"] = ("::1", 5000)
    out = dict(Forwarding().headers(scope, {b"forwarded": b"for=evil"}, b"h:1", "/p"))
    assert out[b"forwarded"] == b'for="[::1]";host="h:1";proto=http'
    assert out[b"x-forwarded-for"] == b"::1" and out[b"x-forwarded-prefix"] == b"/p"
    trusted = dict(Forwarding(["::1"]).headers(
        scope, {b"x-forwarded-for": b"203.0.113.5", b"forwarded": b"for=203.0.113.5"},
        b"h:1", None))
    assert trusted[b"x-forwarded-for"] == b"203.0.113.5, ::1"
    assert trusted[b"forwarded"] == b'for=203.0.113.5, for="[::1]"'
    assert b"x-forwarded-prefix" not in trusted
