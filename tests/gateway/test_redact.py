"""Credentials masked on the way out (`gateway.redact`)."""

from __future__ import annotations

import pytest

from gateway.redact import mask_header, mask_query, redact_request


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("Authorization", "Basic YWxpY2U6d29uZGVy", "Basic [redacted]"),
    ("authorization", "Bearer eyJ.x.y", "Bearer [redacted]"),
    ("Proxy-Authorization", "opaque", "[redacted]"),
    ("Cookie", "sid=abc; theme=dark", "sid=[redacted]; theme=[redacted]"),
    ("Set-Cookie", "sid=abc; Path=/; HttpOnly", "sid=[redacted]; Path=/; HttpOnly"),
    ("X-Api-Key", "k-1", "[redacted]"),
    ("X-Auth-Token", "t-1", "[redacted]"),
    ("X-CSRF-Token", "c-1", "[redacted]"),
    ("X-Hub-Signature-256", "sha256=ab", "[redacted]"),
    ("Content-Type", "text/plain", "text/plain"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZQ==", "dGhlIHNhbXBsZQ=="),
    ("WWW-Authenticate", 'Basic realm="x"', 'Basic realm="x"'),
])
def test_mask_header(name: str, value: str, shown: str) -> None:
    assert mask_header(name, value) == shown


@pytest.mark.parametrize(("query", "shown"), [
    ("", ""),
    ("page=2&sort=asc", "page=2&sort=asc"),
    ("token=abc&page=2", "token=[redacted]&page=2"),
    ("access_token=a&refresh_token=b&code=c&state=s",
     "access_token=[redacted]&refresh_token=[redacted]&code=[redacted]&state=s"),
    ("X-Amz-Signature=ff&X-Amz-Date=1", "X-Amz-Signature=[redacted]&X-Amz-Date=1"),
    ("api%5Fkey=z&flag", "api%5Fkey=[redacted]&flag"),
    ("my_secret_thing=1&password=p", "my_secret_thing=[redacted]&password=[redacted]"),
])
def test_mask_query(query: str, shown: str) -> None:
    assert mask_query(query) == shown


def test_redact_request_leaves_the_original_alone() -> None:
    request = {"query": "key=k", "request_headers": [("cookie", "a=b")],
               "response_headers": [("set-cookie", "a=c")], "path": "/x"}
    out = redact_request(request)
    assert out == {"query": "key=[redacted]", "request_headers": [("cookie", "a=[redacted]")],
                   "response_headers": [("set-cookie", "a=[redacted]")], "path": "/x"}
    assert request["query"] == "key=k" and request["request_headers"] == [("cookie", "a=b")]
