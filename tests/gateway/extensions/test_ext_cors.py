"""CORS: preflights answered at the gateway, allow-origin on actual requests, Vary."""

from __future__ import annotations

from tests.support.extensions import gateway, member

CORS = ('[[extensions]]\ntype = "cors"\n[extensions.config]\n'
        'allow_origins = ["https://app.example.com", "https://*.example.org"]\n'
        'allow_methods = ["GET", "POST", "PUT"]\n'
        'allow_headers = ["Content-Type", "X-Token"]\n'
        'expose_headers = ["X-Total"]\n'
        'allow_credentials = true\nmax_age = 300\n')


def _preflight(origin: str, method: str = "PUT", headers: str = "") -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        out["Access-Control-Request-Headers"] = headers
    return out


async def test_preflight_is_answered_without_reaching_the_app(tmp_path, monkeypatch) -> None:
    async with gateway(CORS, tmp_path, monkeypatch) as (served, upstream, client):
        r = await client.options("/api", headers=_preflight(
            "https://app.example.com", headers="x-token, content-type"))
        assert r.status_code == 204 and r.content == b""
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "PUT" in r.headers["access-control-allow-methods"]
        assert "X-Token" in r.headers["access-control-allow-headers"]
        assert r.headers["access-control-max-age"] == "300"
        assert "Origin" in r.headers["vary"]
        # Wildcard subdomains, at any depth, but not the bare domain.
        r = await client.options("/api", headers=_preflight("https://a.b.example.org"))
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://a.b.example.org"
        assert upstream.calls == []
        assert member(served, "cors").metrics()["preflights"] == 2


async def test_disallowed_preflights_are_refused_with_a_plain_message(
        tmp_path, monkeypatch) -> None:
    async with gateway(CORS, tmp_path, monkeypatch) as (served, upstream, client):
        cases = [
            (_preflight("https://evil.test"), "origin"),
            (_preflight("https://example.org"), "origin"),
            (_preflight("https://app.example.com.evil.test"), "origin"),
            (_preflight("https://app.example.com", method="DELETE"), "method"),
            (_preflight("https://app.example.com", headers="X-Other"), "header"),
        ]
        for headers, word in cases:
            r = await client.options("/api", headers=headers)
            assert r.status_code == 403, headers
            assert r.headers["content-type"].startswith("text/plain")
            assert word in r.text and "access-control-allow-origin" not in r.headers
        assert upstream.calls == []
        assert member(served, "cors").metrics()["refused"] == len(cases)


async def test_actual_requests_get_allow_origin_and_vary(tmp_path, monkeypatch) -> None:
    async with gateway(CORS, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/api?vary=Accept-Language",
                             headers={"Origin": "https://app.example.com"})
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-expose-headers"] == "X-Total"
        assert r.headers["vary"] == "Accept-Language, Origin"
        r = await client.get("/api", headers={"Origin": "https://evil.test"})
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["vary"] == "Origin"
        r = await client.get("/api")  # same-origin / non-browser: still varies
        assert r.headers["vary"] == "Origin"
        # A plain OPTIONS (no Access-Control-Request-Method) is the app's.
        r = await client.options("/api", headers={"Origin": "https://app.example.com"})
        assert r.status_code == 200
        assert len(upstream.calls) == 4


async def test_star_without_credentials_is_a_fixed_answer(tmp_path, monkeypatch) -> None:
    config = '[[extensions]]\ntype = "cors"\n'
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/", headers={"Origin": "https://anyone.test"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "vary" not in r.headers
        r = await client.options("/", headers=_preflight("https://anyone.test", "PATCH",
                                                          "X-Anything"))
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-headers"] == "X-Anything"


async def test_star_with_credentials_echoes_the_origin(tmp_path, monkeypatch) -> None:
    config = '[[extensions]]\ntype = "cors"\n[extensions.config]\nallow_credentials = true\n'
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/", headers={"Origin": "https://anyone.test"})
        assert r.headers["access-control-allow-origin"] == "https://anyone.test"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["vary"] == "Origin"
