"""The `auth` extension through a real gateway: Basic with hashes from the real `htpasswd`,
JWT (HMAC, PEM, JWKS), forward auth to a real auth service, WebSocket handshakes, /metrics,
excluded paths, the brake on guessing, and exports that keep no secret."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import tomlkit
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.auth.passwords import hash_format, parse_basic, verify_password
from gateway.auth.paths import PathRules
from gateway.config.loader import validate_text
from gateway.errors import ConfigError
from gateway.export import export_requests
from tests.support.extensions import gateway, member
from tests.support.harness import ROOT, serve_config

SECRET = "s3cr3t-key-for-the-tests-0123456789abcdef"


def htpasswd(user: str, password: str, flag: str) -> str:
    """A hash made by the real htpasswd (-B bcrypt at the lowest cost, -s {SHA}, -m apr1)."""
    exe = shutil.which("htpasswd")
    if exe is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    args = [exe, "-nb", flag, *(["-C", "4"] if flag == "-B" else []), user, password]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return out.strip().split(":", 1)[1]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def record_headers(upstream: Any, seen: list[dict[bytes, bytes]]) -> None:
    """Make the test upstream keep the request headers it gets, then answer as usual."""
    default = upstream.handler

    async def record(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope["headers"]))
        await default(scope, receive, send)

    upstream.handler = record


def auth_toml(**config: Any) -> str:
    return tomlkit.dumps({"extensions": [{"type": "auth", "config": config}]})


def hs256(claims: dict[str, Any], key: str = SECRET, **kw: Any) -> str:
    claims = {"exp": int(time.time()) + 300, **claims}
    return jwt.encode(claims, key, algorithm="HS256", **kw)


# --- units: hashes, credentials, paths -------------------------------------------------------

@pytest.mark.parametrize("flag", ["-B", "-s", "-m"])
def test_htpasswd_hashes_verify(flag: str) -> None:
    stored = htpasswd("alice", "pässword", flag)
    assert hash_format(stored) is not None
    assert verify_password("pässword".encode(), stored)
    assert not verify_password(b"password", stored)
    assert not verify_password(b"", stored)


def test_parse_basic() -> None:
    token = base64.b64encode(b"al:ice:pa:ss")
    assert parse_basic(b"Basic " + token) == (token, "al", b"ice:pa:ss")
    assert parse_basic(b"basic  " + token) == (token, "al", b"ice:pa:ss")
    for bad in (b"Bearer " + token, b"Basic !!!", b"Basic " + base64.b64encode(b"nocolon"),
                b"Basic " + base64.b64encode(b"\xff:x")):
        assert parse_basic(bad) is None


def test_path_rules_glob_prefix_and_canonical_spelling() -> None:
    rules = PathRules(exclude_paths=["/public", "/health*", "*.css"])
    assert not rules.covers("/public") and not rules.covers("/public/a/b")
    assert rules.covers("/publicity") and rules.covers("/")
    assert not rules.covers("/healthz") and not rules.covers("/x/site.css")
    # a spelling that a later step could normalise into a protected path is never excluded
    for sneaky in ("/public/../admin", "//public/x", "/public/./x", "/public/%2e%2e/x/..",
                   "/public\\..\\admin"):
        assert rules.covers(sneaky), sneaky
    only = PathRules(paths=["/admin"], exclude_paths=["/admin/login"])
    assert only.covers("/admin/users") and not only.covers("/other")
    assert not only.covers("/admin/login") and only.covers("//other")


# --- configuration errors ---------------------------------------------------------------------

@pytest.mark.parametrize(("config", "where", "message"), [
    ({}, "extensions[0].config", "'method' is required"),
    ({"method": "basic", "users": {"bob": "plain"}}, "users.bob", "htpasswd -nB"),
    ({"method": "basic"}, "users", "needs users"),
    ({"method": "jwt", "secret_key": "short"}, "secret_key", "at least 32 bytes"),
    ({"method": "jwt", "public_key_file": "missing.pem"}, "public_key_file", "cannot read"),
    ({"method": "jwt", "jwks_file": "bad.json"}, "jwks_file", "not JSON"),
    ({"method": "jwt", "public_key_file": "garbage.pem"}, "public_key_file",
     "not a PEM public key"),
    ({"method": "jwt", "public_key_file": "private.pem"}, "public_key_file",
     "holds a private key"),
    ({"method": "jwt", "secret_key": SECRET, "users": {"a": "{SHA}x"}}, "users",
     "method 'basic'"),
    ({"method": "jwt", "secret_key": SECRET, "claims_to_headers": {"sub": "Host"}},
     "claims_to_headers", "cannot be set"),
    ({"method": "forward", "url": "app:nosuch/verify"}, "url", "no app named 'nosuch'"),
    ({"method": "forward", "url": "https://x/verify"}, "url", "http:// URL"),
    ({"method": "basic", "users": {"a": "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="},
      "exclude_paths": ["health"]}, "exclude_paths", "starts with / or *"),
])
def test_bad_auth_config_is_one_positioned_error(tmp_path: Path, config: dict[str, Any],
                                                 where: str, message: str) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    (tmp_path / "private.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path = tmp_path / "workbench.toml"
    text = auth_toml(**config)
    with pytest.raises(ConfigError) as err:
        validate_text(path, text, environ={})
    assert where in err.value.where and message in err.value.message, str(err.value)
    assert err.value.line > 0


def test_extensions_that_answer_before_auth_are_warned_about(tmp_path: Path) -> None:
    from gateway.extensions.auth import order_warnings

    auth = {"type": "auth", "config": {"method": "jwt", "secret_key": SECRET}}
    cors = {"type": "cors", "config": {}}
    caching = {"type": "caching", "config": {}}
    path = tmp_path / "workbench.toml"
    project = validate_text(path, tomlkit.dumps({"extensions": [cors, caching, auth]}),
                            environ={})
    assert order_warnings(project) == [
        "workbench.toml:6:1: extensions[1] (caching) comes before auth: the requests it "
        "answers are not authenticated; list auth first"]
    project = validate_text(path, tomlkit.dumps({"extensions": [cors, auth, caching]}),
                            environ={})
    assert order_warnings(project) == []


# --- basic ------------------------------------------------------------------------------------

async def test_basic_auth_answers_and_brakes_guessing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = auth_toml(method="basic", realm="team", exclude_paths=["/open"],
                     max_failures=3, failures_per_minute=60, trusted_proxies=["127.0.0.1"],
                     users={"alice": htpasswd("alice", "wonder", "-B"),
                            "carol": htpasswd("carol", "sha-pw", "-s"),
                            "dave": htpasswd("dave", "apr-pw", "-m")})
    async with gateway(text, tmp_path, monkeypatch) as (served, upstream, client):
        r = await client.get("/x")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="team", charset="UTF-8"'
        assert "request id" in r.text and upstream.calls == []
        for user, pw in (("alice", "wonder"), ("carol", "sha-pw"), ("dave", "apr-pw")):
            assert (await client.get("/x", headers=basic(user, pw))).status_code == 200
        ext = member(served, "auth")
        checks = ext.passwords.checks
        for _ in range(3):  # a logged-in browser: remembered, not checked again
            assert (await client.get("/x", headers=basic("alice", "wonder"))).status_code == 200
        assert ext.passwords.checks == checks and ext.remembered == 3

        assert (await client.get("/open/page")).status_code == 200  # excluded
        assert (await client.get("/health")).status_code == 200  # always open
        assert (await client.get("/metrics")).status_code == 401  # guarded
        m = (await client.get("/metrics", headers=basic("carol", "sha-pw"))).json()
        assert m["extensions"]["auth"]["allowed"] >= 6

        # Guessing from one address: 3 failures, then 429 even for the right password.
        xff = {"x-forwarded-for": "203.0.113.7"}
        for pw in ("a", "b"):
            r = await client.get("/x", headers={**basic("alice", pw), **xff})
            assert r.status_code == 401
        r = await client.get("/x", headers={**basic("nobody", "c"), **xff})
        assert r.status_code == 401  # an unknown user costs a failure too
        r = await client.get("/x", headers={**basic("alice", "wonder"), **xff})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # ...while other addresses are not held back.
        r = await client.get("/x", headers={**basic("alice", "wonder"),
                                            "x-forwarded-for": "203.0.113.8"})
        assert r.status_code == 200
        assert ext.limited == 1

        records = {r.request_id: r for r in served.services.request_log.snapshot()}
        notes = [dict(r.notes).get("auth") for r in records.values()]
        assert "basic: user alice" in notes
        assert "refused (basic): wrong password for user 'alice'" in notes
        assert "refused (basic): unknown user 'nobody'" in notes
        assert any(n and n.startswith("refused (basic): too many failed") for n in notes)
        assert not any("wonder" in str(n) for n in notes)


async def test_unknown_users_take_as_long_as_wrong_passwords(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bcrypt

    # Cost 8 (~20 ms, so the difference would show), in htpasswd's $2y$ spelling.
    stored = bcrypt.hashpw(b"wonder", bcrypt.gensalt(8)).decode().replace("$2b$", "$2y$")
    text = auth_toml(method="basic", users={"alice": stored}, max_failures=100)
    async with gateway(text, tmp_path, monkeypatch) as (_served, _upstream, client):
        async def timed(user: str) -> float:
            t = time.perf_counter()
            r = await client.get("/x", headers=basic(user, "guess"))
            assert r.status_code == 401
            return time.perf_counter() - t

        known = sorted([await timed("alice") for _ in range(5)])[2]
        unknown = sorted([await timed("mallory") for _ in range(5)])[2]
        assert unknown > known * 0.5, (known, unknown)


# --- jwt --------------------------------------------------------------------------------------

async def test_jwt_hs256_claims_expiry_and_spoofed_headers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = auth_toml(method="jwt", secret_key=SECRET, issuer="https://id.example",
                     audience="shop", leeway=5, exclude_paths=["/public"],
                     claims_to_headers={"sub": "X-User", "roles": "X-Roles"})
    seen: list[dict[bytes, bytes]] = []
    async with gateway(text, tmp_path, monkeypatch) as (_served, upstream, client):
        record_headers(upstream, seen)
        good = {"sub": "u42", "roles": ["admin", "ops"], "iss": "https://id.example",
                "aud": "shop"}
        r = await client.get("/x", headers={**bearer(hs256(good)), "x-user": "root"})
        assert r.status_code == 200
        assert seen[-1][b"x-user"] == b"u42" and seen[-1][b"x-roles"] == b"admin,ops"

        r = await client.get("/x")
        assert r.status_code == 401 and r.headers["www-authenticate"] == \
            'Bearer realm="pyserve-tui"'  # no error code without credentials (RFC 6750 3.1)
        cases = {
            "the token has expired": hs256({**good, "exp": int(time.time()) - 60}),
            "wrong audience": hs256({**good, "aud": "other"}),
            "wrong issuer": hs256({**good, "iss": "https://evil"}),
            "bad signature": hs256(good, key="another-secret-that-is-32-bytes-long!"),
            "the token is not valid yet": hs256({**good, "nbf": int(time.time()) + 60}),
            "the token has no 'exp' claim": jwt.encode(
                {k: v for k, v in good.items()}, SECRET, algorithm="HS256"),
            "algorithm not allowed for this key": jwt.encode(
                {**good, "exp": int(time.time()) + 60}, None, algorithm="none"),
            "malformed token": "not.a.token",
        }
        for why, token in cases.items():
            r = await client.get("/x", headers=bearer(token))
            assert r.status_code == 401, why
            assert r.headers["www-authenticate"] == (
                f'Bearer realm="pyserve-tui", error="invalid_token", error_description="{why}"')
        # inside the leeway an expired token still passes
        r = await client.get("/x", headers=bearer(hs256({**good, "exp": int(time.time()) - 2})))
        assert r.status_code == 200
        r = await client.get("/x", headers={"authorization": "Bearer a b"})
        assert r.status_code == 400 and 'error="invalid_request"' in r.headers["www-authenticate"]

        # on an excluded path the claim headers a client invents are still removed
        seen.clear()
        r = await client.get("/public/x", headers={"x-user": "root", "X-Roles": "admin"})
        assert r.status_code == 200 and b"x-user" not in seen[-1] and b"x-roles" not in seen[-1]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_forged(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token made by hand (PyJWT itself refuses a PEM key as an HMAC secret)."""
    import hashlib
    import hmac

    signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    return signing + "." + _b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def _pem(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_jwt_public_keys_pem_and_jwks_refuse_algorithm_confusion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "rsa.pem").write_bytes(_pem(rsa_key.public_key()))
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwk2 = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    (tmp_path / "keys.json").write_text(json.dumps(
        {"keys": [{**jwk, "kid": "ec1"}, {**jwk2, "kid": "rsa1", "alg": "RS256"}]}))
    exp = {"sub": "svc", "exp": int(time.time()) + 60}

    text = auth_toml(method="jwt", public_key_file="rsa.pem")
    async with gateway(text, tmp_path, monkeypatch) as (_served, _upstream, client):
        ok = jwt.encode(exp, rsa_key, algorithm="RS256")
        assert (await client.get("/x", headers=bearer(ok))).status_code == 200
        ps = jwt.encode(exp, rsa_key, algorithm="PS256")
        assert (await client.get("/x", headers=bearer(ps))).status_code == 200
        # HS256 signed with the public key's PEM as the secret: the classic confusion
        forged = _hmac_forged(exp, _pem(rsa_key.public_key()))
        r = await client.get("/x", headers=bearer(forged))
        assert r.status_code == 401 and "algorithm not allowed" in r.headers["www-authenticate"]

    (tmp_path / "workbench.toml").unlink()
    text = auth_toml(method="jwt", jwks_file="keys.json")
    async with gateway(text, tmp_path, monkeypatch) as (_served, _upstream, client):
        es = jwt.encode(exp, ec_key, algorithm="ES256", headers={"kid": "ec1"})
        assert (await client.get("/x", headers=bearer(es))).status_code == 200
        rs = jwt.encode(exp, rsa_key, algorithm="RS256", headers={"kid": "rsa1"})
        assert (await client.get("/x", headers=bearer(rs))).status_code == 200
        ps = jwt.encode(exp, rsa_key, algorithm="PS256", headers={"kid": "rsa1"})
        r = await client.get("/x", headers=bearer(ps))  # the JWK pins RS256
        assert r.status_code == 401
        wrong_kid = jwt.encode(exp, ec_key, algorithm="ES256", headers={"kid": "rsa1"})
        assert (await client.get("/x", headers=bearer(wrong_kid))).status_code == 401
        nokid = jwt.encode(exp, ec_key, algorithm="ES256")
        r = await client.get("/x", headers=bearer(nokid))
        assert r.status_code == 401 and "no key id" in r.headers["www-authenticate"]


# --- forward ----------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="error",
                                           access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_forward_auth_to_an_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.apps import authsvc

    seen: list[dict[bytes, bytes]] = []
    async with serve_asgi(authsvc.app) as port:
        text = auth_toml(method="forward", url=f"http://127.0.0.1:{port}/verify",
                         response_headers=["X-User", "X-Auth-Saw"], timeout=0.5)
        async with gateway(text, tmp_path, monkeypatch) as (served, upstream, client):
            record_headers(upstream, seen)
            r = await client.post("/orders?id=7", content=b"body",
                                  headers={"x-pass": "yes", "x-user": "root"})
            assert r.status_code == 200
            assert seen[-1][b"x-user"] == b"bob"  # the client's own X-User is gone
            assert seen[-1][b"x-auth-saw"] == b"POST /orders?id=7"
            assert b"x-not-copied" not in seen[-1]

            r = await client.get("/orders")  # refused: the auth service's answer, as it came
            assert (r.status_code, r.text) == (401, "authsvc says no\n")
            assert r.headers["www-authenticate"] == 'Bearer realm="authsvc"'
            r = await client.get("/orders", headers={"x-pass": "login"})
            assert (r.status_code, r.headers["location"], r.text) == (
                302, "/login?next=x", "go and log in\n")
            assert r.headers["set-cookie"] == "flow=abc; Path=/"
            # one pooled keep-alive connection served the three auth exchanges
            pool = served.services.transport.stats()[f"127.0.0.1:{port}"]
            assert pool["opened"] == 1 and pool["reused"] == 2, pool
            # an allowing answer whose body takes for ever is not read to its end
            t = time.perf_counter()
            r = await client.get("/orders", headers={"x-pass": "stream"})
            assert r.status_code == 200 and seen[-1][b"x-user"] == b"streamer"
            assert time.perf_counter() - t < 5

        # a slow auth service: 504 saying so, and the app is not asked
        (tmp_path / "workbench.toml").unlink()
        text = auth_toml(method="forward", url=f"http://127.0.0.1:{port}/verify?sleep=2",
                         timeout=0.3)
        async with gateway(text, tmp_path, monkeypatch) as (_served, upstream, client):
            r = await client.get("/orders", headers={"x-pass": "yes"})
            assert r.status_code == 504 and "authentication service" in r.text
            assert upstream.calls == []


async def test_forward_auth_unreachable_is_502(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    text = auth_toml(method="forward", url=f"http://127.0.0.1:{port}/verify")
    async with gateway(text, tmp_path, monkeypatch) as (served, upstream, client):
        r = await client.get("/x")
        assert r.status_code == 502 and "authentication service" in r.text
        assert upstream.calls == []
        note = dict(served.services.request_log.snapshot()[-1].notes)["auth"]
        assert note.startswith("refused (forward): 502")


# --- in-process mounts: HTTP and WebSocket, several entries, exports --------------------------

async def test_mount_behind_three_entries_http_websocket_and_sanitized_har(
        tmp_path: Path) -> None:
    from tests.apps import authsvc

    async with serve_asgi(authsvc.app) as port:
        await _mount_behind_three_entries(tmp_path, port)


async def _mount_behind_three_entries(tmp_path: Path, port: int) -> None:
    users = {"alice": htpasswd("alice", "wonder", "-s")}
    text = tomlkit.dumps({"extensions": [
        {"type": "auth", "config": {"method": "forward", "paths": ["/m/fw"],
                                    "url": f"http://127.0.0.1:{port}/verify",
                                    "response_headers": ["X-User"]}},
        {"type": "auth", "config": {"method": "basic", "users": users,
                                    "exclude_paths": ["/m/health", "/m/api/*", "/m/fw"]}},
        {"type": "auth", "config": {"method": "jwt", "secret_key": SECRET,
                                    "paths": ["/m/api/*"],
                                    "claims_to_headers": {"sub": "X-Sub"}}},
        {"type": "asgi", "config": {"mounts": [
            {"path": "/m", "app_path": "tests.apps.basic:app", "name": "m",
             "module_path": str(ROOT)}]}},
    ]})
    async with serve_config(text, tmp_path) as gw:
        token = bearer(hs256({"sub": "svc"}))
        async with httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=10) as http:
            assert (await http.get("/m/health")).status_code == 200
            assert (await http.get("/m/echo")).status_code == 401
            r = await http.get("/m/echo?token=tok-777&page=2",
                               headers={**basic("alice", "wonder"),
                                        "cookie": "session=cookie-555; theme=dark"})
            assert r.status_code == 200 and r.json()["path"] == "/echo"
            r = await http.get("/m/api/x", headers=basic("alice", "wonder"))
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            r = await http.get("/m/api/x", headers=token)
            assert r.status_code == 200 and r.json()["headers"]["x-sub"] == "svc"
            assert (await http.get("/metrics", headers=token)).status_code == 401
            r = await http.get("/m/fw/x", headers={"x-pass": "yes"})
            assert r.status_code == 200 and r.json()["headers"]["x-user"] == "bob"
            r = await http.get("/m/fw/x", headers={"x-pass": "login"})
            assert (r.status_code, r.headers["location"]) == (302, "/login?next=x")
            metrics = (await http.get("/metrics", headers={**basic("alice", "wonder"),
                                                           "x-pass": "yes"})).json()
            ext = metrics["extensions"]
            assert [ext[n]["method"] for n in ("auth", "auth#2", "auth#3")] == [
                "forward", "basic", "jwt"]
            assert ext["auth#3"]["excluded"] >= 3  # the basic-only paths

        ws = gw.url.replace("http", "ws") + "/m/api/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws, additional_headers=basic("alice", "wonder")):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["www-authenticate"].startswith("Bearer")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws):
                pass
        assert refused.value.response.status_code == 401
        async with connect(ws, additional_headers=token) as sock:
            await sock.send("hi")
            assert await sock.recv() == "echo: hi"
        basic_ws = gw.url.replace("http", "ws") + "/m/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(basic_ws):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["www-authenticate"].startswith("Basic")
        async with connect(basic_ws, additional_headers=basic("alice", "wonder")) as sock:
            await sock.send("hey")
            assert await sock.recv() == "echo: hey"

        kept = gw.services.request_log.snapshot()
        har = tmp_path / "out.har"
        export_requests(kept, [], har, "har")
        text_out = har.read_text()
        entries = json.loads(text_out)["log"]["entries"]
        assert len(entries) >= 6
        secrets = ("tok-777", "cookie-555", base64.b64encode(b"alice:wonder").decode(),
                   token["authorization"].split()[1])
        for secret in secrets:
            assert secret not in text_out, secret
        assert "page=2" in text_out and "theme=[redacted]" in text_out
        assert "Basic [redacted]" in text_out
        full = tmp_path / "full.jsonl"
        export_requests(kept, [], full, "jsonl", include_credentials=True)
        assert all(secret in full.read_text() for secret in secrets)
