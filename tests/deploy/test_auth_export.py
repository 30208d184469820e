"""The `auth` extension's entries as nginx runs them: basic with the htpasswd file written
beside nginx.conf, forward auth through auth_request, JWT refused (fail closed), each on the
paths it covers and no others."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.config.loader import validate_text
from gateway.deploy import export_files, write_export
from tests.support.deploy import NGINX, Nginx, need
from tests.support.harness import ROOT, free_port


class _ForwardAuth(BaseHTTPRequestHandler):
    """Allows a request carrying `X-Token: good`, naming the user in `X-User`."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).seen.append(self.headers.get("X-Original-URI", ""))
        ok = self.headers.get("X-Token") == "good"
        self.send_response(200 if ok else 401)
        self.send_header("X-User", "bob")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def nginx_with_auth(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    need(NGINX, "nginx")
    service = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardAuth)
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    password = base64.b64encode(hashlib.sha1(b"secret").digest()).decode()
    port = free_port()
    auth = f"""
[[extensions]]
type = "auth"
[extensions.config]
method = "basic"
realm = "staff"
users = {{ alice = "{{SHA}}{password}" }}
exclude_paths = ["/ping", "/public/*"]

[[extensions]]
type = "auth"
[extensions.config]
method = "forward"
url = "http://127.0.0.1:{service.server_port}/check"
response_headers = ["X-User"]
paths = ["/api"]

[[extensions]]
type = "auth"
[extensions.config]
method = "jwt"
secret_key = "a-secret-of-at-least-32-bytes-for-hs256"
paths = ["/guestbook"]
"""
    text = (ROOT / "workbench.toml").read_text().replace("port = 8000", f"port = {port}")
    head, sep, tail = text.partition("[[extensions]]\ntype = \"monitoring\"")
    project = validate_text(ROOT / "workbench.toml", head + auth + "\n" + sep + tail,
                            environ={})
    out = tmp_path / "systemd"
    result = export_files(project, "systemd", out)
    write_export(result, out)
    assert (out / "htpasswd").read_text() == f"alice:{{SHA}}{password}\n"
    server = Nginx(out / "nginx.conf", tmp_path / "nginx")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)
    try:
        server.wait_answering(client)
        yield client, result.report.text()
    finally:
        client.close()
        server.stop()
        service.shutdown()
        service.server_close()


def test_each_entry_guards_its_own_paths(nginx_with_auth: tuple[httpx.Client, str]) -> None:
    client, report = nginx_with_auth
    basic = ("alice", "secret")
    assert client.get("/ping").status_code == 200  # excluded from basic, not covered else
    r = client.get("/style.css")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="staff"'
    assert client.get("/style.css", auth=("alice", "wrong")).status_code == 401
    assert client.get("/style.css", auth=basic).status_code == 200
    # /api: basic and the forward service must both agree (the app is not running here,
    # so a request both let through ends in 502 from nginx).
    _ForwardAuth.seen.clear()
    assert client.get("/api/items", auth=basic).status_code == 401
    assert _ForwardAuth.seen == ["/api/items"]
    assert client.get("/api/items", auth=basic, headers={"X-Token": "good"}).status_code == 502
    assert client.get("/api/items", headers={"X-Token": "good"}).status_code == 401
    # The forward service is asked only for the paths it covers.
    _ForwardAuth.seen.clear()
    client.get("/style.css", auth=basic)
    assert _ForwardAuth.seen == []
    # JWT cannot be checked by stock nginx: refused, and the report says so.
    r = client.get("/guestbook/", auth=basic)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "stock nginx cannot check JWTs" in report
    assert "auth #2 (forward)" in report
