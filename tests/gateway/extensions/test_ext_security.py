"""Security extension: IP filtering on the real peer, trusted X-Forwarded-For, headers."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.config.schema import SecurityOptions
from gateway.extensions._client import ClientResolver, NetworkSet, parse_address
from gateway.extensions.security import SecurityExtension
from tests.support.extensions import call_asgi, gateway, http_scope, member, response_headers


def _security(**options: object) -> str:
    lines = ['[[extensions]]', 'type = "security"', '[extensions.config]']
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


# --- address parsing and matching --------------------------------------------------------

def test_network_set_matches_ipv4_and_ipv6_cidr_blocks() -> None:
    nets = NetworkSet(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"])
    assert ipaddress.ip_address("10.200.3.4") in nets
    assert ipaddress.ip_address("192.168.1.7") in nets
    assert ipaddress.ip_address("192.168.1.8") not in nets
    assert ipaddress.ip_address("2001:db8:abcd::1") in nets
    assert ipaddress.ip_address("2001:db9::1") not in nets
    assert ipaddress.ip_address("::1") in nets
    assert ipaddress.ip_address("11.0.0.1") not in nets
    assert "10.0.0.1" not in nets  # strings are not addresses


def test_ipv4_mapped_ipv6_is_treated_as_ipv4() -> None:
    assert parse_address("::ffff:10.1.2.3").text == "10.1.2.3"
    assert parse_address("::ffff:10.1.2.3").ip in NetworkSet(["10.0.0.0/8"])
    # A block written in mapped form matches the plain IPv4 address too.
    assert parse_address("10.1.2.3").ip in NetworkSet(["::ffff:10.0.0.0/104"])


@pytest.mark.parametrize(("raw", "text"), [
    ("1.2.3.4", "1.2.3.4"), (" 1.2.3.4:8080 ", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::1"),
    ("2001:DB8::1", "2001:db8::1"), ("not-an-ip", "not-an-ip"),
])
def test_parse_address_forms(raw: str, text: str) -> None:
    assert parse_address(raw).text == text


def test_resolver_takes_rightmost_untrusted_forwarded_address() -> None:
    resolver = ClientResolver(["127.0.0.1", "10.0.0.0/8"])
    scope = http_scope(headers=[(b"x-forwarded-for", b"6.6.6.6, 8.8.8.8, 10.0.0.2")])
    assert resolver.resolve(scope).text == "8.8.8.8"
    # From an untrusted peer the header is ignored entirely.
    scope["client"] = ("203.0.113.9", 1234)
    assert resolver.resolve(scope).text == "203.0.113.9"
    # Several header lines are one list, in order.
    scope = http_scope(headers=[(b"x-forwarded-for", b"9.9.9.9"),
                                (b"x-forwarded-for", b"10.1.1.1")])
    assert resolver.resolve(scope).text == "9.9.9.9"
    assert ClientResolver([]).resolve(scope).text == "127.0.0.1"


# --- through the real gateway ------------------------------------------------------------

async def test_blocked_cidr_gets_403_before_the_app(tmp_path, monkeypatch) -> None:
    config = _security(blocked_ips=["10.0.0.50", "127.0.0.0/8"])
    async with gateway(config, tmp_path, monkeypatch) as (served, upstream, client):
        r = await client.get("/anything", headers={"X-Request-ID": "req-blocked-1"})
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/plain")
        assert "req-blocked-1" in r.text and "127.0.0.1" in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        # A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        r = await client.get("/anything", headers={"X-Forwarded-For": "8.8.8.8"})
        assert r.status_code == 403
        assert upstream.calls == []
        assert member(served, "security").metrics() == {"blocked": 2, "allowed": 0}


async def test_spoofed_forwarded_for_cannot_get_a_client_blocked_or_unblocked(
        tmp_path, monkeypatch) -> None:
    config = _security(blocked_ips=["10.0.0.0/8"])
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/", headers={"X-Forwarded-For": "10.9.9.9"})
        assert r.status_code == 200
        assert len(upstream.calls) == 1


async def test_forwarded_for_applies_from_a_trusted_proxy(tmp_path, monkeypatch) -> None:
    config = _security(blocked_ips=["10.0.0.0/8"], trusted_proxies=["127.0.0.1"])
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/", headers={"X-Forwarded-For": "10.9.9.9"})
        assert r.status_code == 403 and "10.9.9.9" in r.text
        # The client can only prepend: the right-most untrusted hop is what counts.
        r = await client.get("/", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.7"})
        assert r.status_code == 200
        r = await client.get("/", headers={"X-Forwarded-For": "198.51.100.7, 10.9.9.9"})
        assert r.status_code == 403
        assert len(upstream.calls) == 1


async def test_whitelist_mode(tmp_path, monkeypatch) -> None:
    async with gateway(_security(allowed_ips=["10.0.0.0/8", "::1/128"]), tmp_path,
                       monkeypatch) as (_, upstream, client):
        assert (await client.get("/")).status_code == 403
    async with gateway(_security(allowed_ips=["127.0.0.0/24"]), tmp_path,
                       monkeypatch) as (_, upstream, client):
        assert (await client.get("/")).status_code == 200
        assert len(upstream.calls) == 1


async def test_blocked_wins_over_allowed(tmp_path, monkeypatch) -> None:
    config = _security(allowed_ips=["127.0.0.0/8"], blocked_ips=["127.0.0.1"])
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        assert (await client.get("/")).status_code == 403


async def test_default_security_headers(tmp_path, monkeypatch) -> None:
    async with gateway(_security(), tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] in ("DENY", "SAMEORIGIN")
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert r.headers["cross-origin-opener-policy"] == "same-origin"
        assert "camera=()" in r.headers["permissions-policy"]
        assert "x-xss-protection" not in r.headers
        assert "strict-transport-security" not in r.headers  # plain http


async def test_configured_headers_replace_defaults_and_app_headers_win(
        tmp_path, monkeypatch) -> None:
    config = ('[[extensions]]\ntype = "security"\n[extensions.config]\n'
              'security_headers = { X-Frame-Options = "SAMEORIGIN", '
              'Strict-Transport-Security = "max-age=60", X-Custom = "yes" }\n')
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/")
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        assert r.headers["strict-transport-security"] == "max-age=60"  # configured: sent
        assert r.headers["x-custom"] == "yes"
        assert "referrer-policy" not in r.headers

        async def own_header(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-frame-options", b"ALLOW-FROM x"),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})

        upstream.handler = own_header
        r = await client.get("/")
        assert r.headers.get_list("x-frame-options") == ["ALLOW-FROM x"]


def _ext(**options: object) -> SecurityExtension:
    async def app(scope, receive, send):
        raise AssertionError("refused clients must not reach the app")

    return SecurityExtension(app, options=SecurityOptions(**options), services=None)


async def test_hsts_by_default_only_on_https() -> None:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    ext = SecurityExtension(app, options=SecurityOptions(), services=None)
    scope = http_scope()
    scope["scheme"] = "https"
    sent, _ = await call_asgi(ext, scope)
    assert response_headers(sent)[b"strict-transport-security"].startswith(b"max-age=")


async def test_websocket_refused_with_close_or_http_403() -> None:
    ext = _ext(blocked_ips=["127.0.0.1"])
    scope = http_scope()
    scope["type"] = "websocket"
    sent, _ = await call_asgi(ext, scope)
    assert sent[0]["type"] == "websocket.close" and sent[0]["code"] == 1008
    scope["extensions"] = {"websocket.http.response": {}}
    sent, _ = await call_asgi(ext, scope)
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 403


async def test_lifespan_and_unknown_clients_pass_or_fail_safely() -> None:
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    ext = SecurityExtension(app, options=SecurityOptions(allowed_ips=["10.0.0.0/8"]),
                            services=None)
    await ext({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]
    # No peer address (a unix socket): whitelist mode refuses it.
    sent, body = await call_asgi(ext, http_scope(client=None))
    assert sent[0]["status"] == 403 and b"unknown" in body
