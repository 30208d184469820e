"""`auth` in front of real app processes: forward auth to an orchestrated app (`app:NAME`)
and Basic, both required, and JWT on another app, over HTTP and WebSocket."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.orch_gateway import serve_gateway
from tests.support.orchestration import Recorder, project_toml

SECRET = "a-secret-for-the-process-tests-0123456789"


def _sha_hash(password: str) -> str:
    exe = shutil.which("htpasswd")
    if exe is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    out = subprocess.run([exe, "-nbs", "alice", password], check=True, capture_output=True,
                         text=True).stdout
    return out.strip().split(":", 1)[1]


async def test_forward_to_an_app_and_basic_must_both_pass(tmp_path: Path,
                                                          recorder: Recorder) -> None:
    users = {"alice": _sha_hash("wonder")}
    text = project_toml(
        [{"name": "api"}, {"name": "authsvc", "app_path": "tests.apps.authsvc:app"},
         {"name": "tok"}],
        extensions=[
            {"type": "auth", "config": {"method": "forward", "url": "app:authsvc/verify",
                                        "response_headers": ["X-User", "X-Auth-Saw"],
                                        "paths": ["/api"]}},
            {"type": "auth", "config": {"method": "basic", "users": users,
                                        "paths": ["/api"]}},
            {"type": "auth", "config": {"method": "jwt", "secret_key": SECRET,
                                        "paths": ["/tok"], "exclude_paths": ["/tok/health"],
                                        "claims_to_headers": {"sub": "X-Sub"}}},
        ])
    creds = {"authorization": "Basic " + base64.b64encode(b"alice:wonder").decode()}
    async with serve_gateway(tmp_path, text, recorder) as gw, httpx.AsyncClient(
            base_url=gw.url, trust_env=False, timeout=15) as http:
        for sup in gw.orchestrator.supervisors.values():
            assert await sup.wait_ready(15), sup

        r = await http.get("/api/echo?q=1", headers={**creds, "x-pass": "yes",
                                                     "x-user": "root"})
        assert r.status_code == 200
        seen = r.json()["headers"]
        assert seen["x-user"] == "bob"  # from the auth app, not the client
        assert seen["x-auth-saw"] == "GET /api/echo?q=1"
        assert seen["authorization"] == creds["authorization"]  # the app may look too

        r = await http.get("/api/echo", headers=creds)  # forward says no: its answer
        assert (r.status_code, r.text) == (401, "authsvc says no\n")
        assert r.headers["www-authenticate"] == 'Bearer realm="authsvc"'
        r = await http.get("/api/echo", headers={"x-pass": "yes"})  # basic says no
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")

        ws = gw.url.replace("http", "ws") + "/api/ws"
        async with connect(ws, additional_headers={**creds, "x-pass": "yes"}) as sock:
            await sock.send("hi")
            assert await sock.recv() == "echo: hi"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws, additional_headers=creds):
                pass
        assert refused.value.response.status_code == 401  # the auth app's own answer
        assert refused.value.response.headers["www-authenticate"] == 'Bearer realm="authsvc"'
        assert refused.value.response.body == b"authsvc says no\n"

        # jwt in front of another app process: claims reach it as headers, over a websocket too
        token = jwt.encode({"sub": "u7", "exp": int(time.time()) + 60}, SECRET)
        r = await http.get("/tok/echo", headers={"authorization": f"Bearer {token}",
                                                 "x-sub": "root"})
        assert r.status_code == 200 and r.json()["headers"]["x-sub"] == "u7"
        r = await http.get("/tok/echo", headers={"authorization": "Bearer expired.or.junk"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        tok_ws = gw.url.replace("http", "ws") + "/tok/ws"
        async with connect(tok_ws, additional_headers={"authorization": f"Bearer {token}"}) \
                as sock:
            await sock.send("yo")
            assert await sock.recv() == "echo: yo"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(tok_ws):
                pass
        assert refused.value.response.status_code == 401

        # The auth app stopped: 503 naming it, and the app is never asked.
        await gw.orchestrator.stop_app("authsvc")
        r = await http.get("/api/echo", headers={**creds, "x-pass": "yes"})
        assert r.status_code == 503 and "authentication app 'authsvc'" in r.text
        notes = [dict(rec.notes) for rec in gw.services.request_log.snapshot()]
        assert notes[-1]["auth"].startswith("refused (forward): 503 from app authsvc/verify")
        assert any(n.get("auth#2") == "basic: user alice" for n in notes)
