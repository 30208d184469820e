"""A real `pyserve-tui --no-ui` process answering over a socket."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.harness import free_port, poll

ROOT = Path(__file__).resolve().parent.parent

PROJECT = """
[server]
port = {port}
backend = "{backend}"
graceful_timeout = 5.0

[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/ping" = {{ return = "200 pong" }}
"""


def start(tmp_path: Path, *extra: str, port: int | None = None, backend: str = "auto"
          ) -> tuple[subprocess.Popen[str], int]:
    port = port or free_port()
    (tmp_path / "workbench.toml").write_text(PROJECT.format(port=port, backend=backend))
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "--no-ui", *extra], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, port


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 20) -> None:
    def healthy() -> bool:
        assert proc.poll() is None, proc.communicate()
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200

    poll(healthy, timeout, what="the gateway to come up", ignore=(httpx.HTTPError,))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc, port = start(tmp_path)
    try:
        wait_ready(proc, port)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serves_health_metrics_and_routes(gateway: tuple[subprocess.Popen[str], int]) -> None:
    _, port = gateway
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/health").text == "OK"
    r = httpx.get(f"{base}/ping")
    assert (r.status_code, r.text) == (200, "pong")
    r = httpx.get(f"{base}/nowhere")
    assert r.status_code == 404 and r.headers["x-request-id"] in r.text
    metrics = httpx.get(f"{base}/metrics").json()
    assert metrics["gateway"]["requests"] >= 3
    # `auto`: the gateway on its own front, the apps on the first installed ASGI server.
    assert (metrics["gateway"]["backend"], metrics["gateway"]["apps_backend"]) == \
        ("builtin", "granian")
    prom = httpx.get(f"{base}/metrics?format=prometheus")
    assert prom.headers["content-type"].startswith("text/plain")
    assert "pyserve_requests_total" in prom.text
    assert 'pyserve_backend_info{gateway="builtin",apps="granian"} 1' in prom.text
    assert "pyserve_requests_total" in httpx.get(f"{base}/metrics",
                                                 headers={"Accept": "text/plain"}).text


def test_request_id_rules(gateway: tuple[subprocess.Popen[str], int]) -> None:
    _, port = gateway
    url = f"http://127.0.0.1:{port}/ping"
    assert httpx.get(url, headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    for bad in ("has space", "x" * 129, "é"):
        rid = httpx.get(url, headers={"X-Request-ID": bad.encode("utf-8")}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f-]{36}", rid), rid
    fresh = httpx.get(url).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", fresh)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert httpx.get(url, headers={"traceparent": tp}).headers["traceparent"] == tp


def test_logs_each_request_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    proc, port = start(tmp_path)
    try:
        wait_ready(proc, port)
        httpx.get(f"http://127.0.0.1:{port}/ping?token=tok-secret-1",
                  headers={"X-Request-ID": "trace-me-1", "Authorization": "Bearer bearer-2",
                           "Cookie": "sid=cookie-3"})
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    line = next(ln for ln in out.splitlines() if "trace-me-1" in ln)
    assert "GET /ping 200" in line
    assert "Traceback" not in err
    for secret in ("tok-secret-1", "bearer-2", "cookie-3"):  # credentials are never logged
        assert secret not in out and secret not in err


def test_json_log_format(tmp_path: Path) -> None:
    proc, port = start(tmp_path, "--log-format", "json")
    try:
        wait_ready(proc, port)
        httpx.get(f"http://127.0.0.1:{port}/ping?access_token=tok-secret-4",
                  headers={"X-Request-ID": "json-1", "X-Api-Key": "key-5"})
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert "tok-secret-4" not in out and "key-5" not in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    req = next(r for r in rows if r.get("request_id") == "json-1")
    assert req["status"] == 200 and req["path"] == "/ping" and req["kind"] == "request"


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc, _ = start(tmp_path, port=port)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in err and "in use" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_the_engine_runs_the_project_the_command_line_validated(tmp_path: Path) -> None:
    # The command line validates the file once (exit 2 before anything starts) and hands
    # the result on: the engine does not read or validate the file again.
    from gateway.config.loader import load_config
    from gateway.engine import Engine

    path = tmp_path / "workbench.toml"
    port = free_port()
    path.write_text(PROJECT.format(port=port, backend="auto"))
    project = load_config(path)
    path.write_text("[server\n")  # reading it again would fail the start
    engine = Engine(path, project=project, watch_config=False, control=False)
    try:
        await engine.start()
        assert engine.project is project
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/ping")
        assert (answer.status_code, answer.text) == (200, "pong")
    finally:
        await engine.stop()
