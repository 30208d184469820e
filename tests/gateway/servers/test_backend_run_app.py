"""`run_app` in a child process: serves with its workers, exits 0 on SIGTERM, leaves nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support.harness import ROOT, free_port

CHILD = """
import sys
from gateway.config.schema import ServerConfig
from gateway.servers.registry import get_backend

keep_alive = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
get_backend(sys.argv[1]).run_app("tests.apps.backends:app", host="127.0.0.1",
                                 port=int(sys.argv[2]), workers=int(sys.argv[3]),
                                 settings=ServerConfig(keep_alive_timeout=keep_alive))
"""


def answering_pids(child: subprocess.Popen[bytes], url: str, want: int,
                   timeout: float) -> set[int]:
    """PIDs that answered, polling with new connections until `want` differ or time is up."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"the server exited early with {child.returncode}")
        try:
            response = httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)  # not listening yet; poll again
            continue
        assert response.status_code == 200
        seen.add(int(response.text.split()[0].removeprefix("pid=")))
    return seen


def start_child(name: str, workers: int, *settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """`run_app` of backend `name` in a child process on a free port (CHILD's argv)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, name, str(port), str(workers),
                              *settings],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return child, port


def kill_started(child: subprocess.Popen[bytes], started: list[psutil.Process]) -> None:
    """Kill what the test started and is still running, by PID; reap the child."""
    for proc in started:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if child.poll() is None:
        child.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", ["granian", "uvicorn", "hypercorn"])
def test_run_app_serves_with_workers_and_stops_on_sigterm(name: str, workers: int) -> None:
    child, port = start_child(name, workers)
    started: list[psutil.Process] = [psutil.Process(child.pid)]
    try:
        pids = answering_pids(child, f"http://127.0.0.1:{port}/", workers, timeout=30)
        assert len(pids) == workers, f"{workers} workers expected, {len(pids)} answered"
        started += psutil.Process(child.pid).children(recursive=True)
        if workers > 1:
            assert child.pid not in pids  # the parent supervises, the workers serve
        assert pids <= {p.pid for p in started}

        child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=30)
        assert child.returncode == 0, output.decode(errors="replace")
        gone, alive = psutil.wait_procs(started, timeout=10)
        assert alive == [], f"left running: {alive}"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        kill_started(child, started)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["granian", "uvicorn", "hypercorn"])
def test_run_app_closes_idle_keep_alive_connections(name: str) -> None:
    """`keep_alive_timeout` reaches app processes on every backend (granian applies it as
    hyper's header read timeout): an idle keep-alive connection is closed after it."""
    child, port = start_child(name, 1, "1")  # keep_alive_timeout = 1 s
    started: list[psutil.Process] = [psutil.Process(child.pid)]
    try:
        answering_pids(child, f"http://127.0.0.1:{port}/", 1, timeout=30)
        started += psutil.Process(child.pid).children(recursive=True)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200"), data
            answered = time.monotonic()
            while True:  # the rest of the response, then the server's close (b"")
                chunk = sock.recv(65536)
                if not chunk:
                    break
            idle = time.monotonic() - answered
        # closed by the server (recv gave b"" before the 10 s socket timeout), not at once
        assert 0.5 <= idle < 9, f"closed after {idle:.2f}s"
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        psutil.wait_procs(started, timeout=10)
        kill_started(child, started)
