"""Request-head building: framing decisions and header filtering, without sockets."""

from __future__ import annotations

from proxy_harness import make_scope

from gateway.proxy import UpstreamTarget
from gateway.proxy.headers import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_UNKNOWN,
    build_request_head,
)

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
