"""The URI normaliser against a table of answers taken from real nginx 1.22 (``$uri`` echoed
by ``return 200 "$uri"``, or its 400), and nginx's URI escaping.

The differential test (test_routing_nginx.py) checks the same against nginx itself on
generated paths; this table keeps the reasoning readable and runs without nginx.
"""

from __future__ import annotations

import pytest

from gateway.routing.uri import InvalidURI, escape_raw, escape_uri, normalise, request_uri

# (request target as sent, nginx's $uri), from nginx 1.22.1 with default merge_slashes on.
NGINX_URI = [
    (b"/", b"/"),
    (b"/a/b", b"/a/b"),
    (b"//", b"/"),
    (b"///sub", b"/sub"),
    (b"//a/./b/%2e%2e/c%2Fd", b"/a/c/d"),     # escapes decoded, then . and .. resolved
    (b"/a/.", b"/a/"),                          # a final . or .. keeps the slash
    (b"/a/./", b"/a/"),
    (b"/.", b"/"),
    (b"/a/..", b"/"),
    (b"/a/%2e%2e", b"/"),
    (b"/a/.%2e/b", b"/b"),
    (b"/a/%2E%2E/b", b"/b"),
    (b"/a/./../b/./c/", b"/b/c/"),
    (b"/a/...", b"/a/..."),                     # three dots are a name
    (b"/.hidden/..", b"/"),
    (b"/a%2F%2F..%2Fb", b"/b"),                 # an encoded / is a slash: merged, resolved
    (b"/a%2F..", b"/"),
    (b"/a/..%2F", b"/"),
    (b"/a%5C..%5Cb", b"/a\\..\\b"),             # a backslash is not a separator on Unix
    (b"/a\\b", b"/a\\b"),
    (b"/a%3Fb", b"/a?b"),                       # %3F, %23, %25 decode to plain characters
    (b"/a%23b", b"/a#b"),
    (b"/a%25b", b"/a%b"),
    (b"/a%252e%252e", b"/a%2e%2e"),             # decoded once only
    (b"/a#frag", b"/a"),                        # a fragment is cut (hypercorn passes it)
    (b"/a/..#x", b"/"),
    (b"/a#%zz", b"/a"),
    (b"/x%01y", b"/x\x01y"),
    (b"/%C3%A9", b"/\xc3\xa9"),                 # bytes, not characters
    (b"/a%ff", b"/a\xff"),
    (b"http://h/x/../y", b"/y"),                # absolute form
    (b"http://h", b"/"),
]

# Request targets nginx answers 400.
NGINX_400 = [b"/..", b"/../x", b"/a/../..", b"/%2e%2e/x", b"//..", b"/a%00b", b"/a%zz",
             b"/a%", b"/a%2", b"/a%2g", b"/%", b"*", b"", b"http://h#x"]


@pytest.mark.parametrize(("raw", "uri"), NGINX_URI)
def test_normalise_agrees_with_nginx(raw: bytes, uri: bytes) -> None:
    assert normalise(raw) == uri


@pytest.mark.parametrize("raw", NGINX_400)
def test_normalise_refuses_what_nginx_refuses(raw: bytes) -> None:
    with pytest.raises(InvalidURI):
        normalise(raw)


def test_a_normal_path_comes_back_as_it_is() -> None:
    raw = b"/api/v1/users"
    assert normalise(raw) is raw


def test_request_uri_without_raw_path_uses_the_decoded_path() -> None:
    # ASGI lets a server leave raw_path out: the decoded path must not be decoded again.
    assert request_uri({"path": "/a%2e%2e/b c#d/./e"}) == b"/a%2e%2e/b c#d/e"
    assert request_uri({"path": "/x", "raw_path": b"//x/./y"}) == b"/x/y"


@pytest.mark.parametrize(("path", "escaped"), [
    (b"/a/b-c_d.e~f", "/a/b-c_d.e~f"),
    (b"/:@!$&'()*+,;=[]", "/:@!$&'()*+,;=[]"),      # nginx leaves these alone
    (b'/ "#%<>?\\^`{|}\x7f', "/%20%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D%7F"),
    (b"/\x00\x1f", "/%00%1F"),
    (b"/caf\xc3\xa9", "/caf%C3%A9"),
])
def test_escape_uri_is_nginx_escape_uri(path: bytes, escaped: str) -> None:
    assert escape_uri(path) == escaped
    if b"\x00" not in path:  # nginx refuses an encoded NUL
        assert normalise(escaped.encode()) == path


def test_escape_raw_keeps_the_clients_escapes() -> None:
    assert escape_raw(b"//a/%2e%2E/b%zz") == "//a/%2e%2E/b%zz"
    assert escape_raw(b"/caf\xc3\xa9 x") == "/caf%C3%A9%20x"
