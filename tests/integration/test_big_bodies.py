"""200 MB each way through the gateway: bodies are streamed, never held in memory (SPEC §3).

The gateway runs inside the `pyserve-tui` process, so that process's RSS is what must not
grow with the body; it is sampled all along each transfer, not only before and after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support.integration import Project, Workbench, WorkbenchFactory

MiB = 1024 * 1024
SIZE = 200 * MiB
CHUNK = MiB
#: Allowed growth of the gateway's RSS over a transfer (buffers, allocator slack).
GROWTH_LIMIT = 50 * MiB

BULK_APP = '''\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"][len(scope.get("root_path", "")):]  # the route, under any prefix
    if path == "/upload":  # count the body, keep nothing
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/download":  # stream `mb` MiB, one MiB at a time
        size = int(scope["query_string"].decode().partition("=")[2] or 1) * 1048576
        chunk = b"x" * 1048576
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode()),
                                (b"content-type", b"application/octet-stream")]})
        for _ in range(size // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
'''


class RssSampler:
    """The highest RSS of a process, sampled every 20 ms while in the `with` block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self.before = self.rss()
        self.peak = self.before
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)
        self.after = self.rss()
        self.peak = max(self.peak, self.after)

    def __repr__(self) -> str:
        return (f"<RSS before={self.before / MiB:.1f} MiB peak={self.peak / MiB:.1f} MiB "
                f"after={self.after / MiB:.1f} MiB>")


@pytest.fixture(params=["granian", "uvicorn", "hypercorn"])
def wb(request: pytest.FixtureRequest, project: Project,
       start_workbench: WorkbenchFactory) -> Workbench:
    """The gateway (and the app) on each backend."""
    (project.folder / "bulk.py").write_text(BULK_APP)
    project.write(apps=[{"name": "bulk", "path": "/bulk", "app_path": "bulk:app",
                         "module_path": "."}], backend=request.param)
    wb = start_workbench(project, apps=["bulk"])
    assert wb.metrics()["gateway"]["backend"] == request.param
    return wb


def upload(client: httpx.Client, size: int) -> httpx.Response:
    def body() -> Iterator[bytes]:  # a generator: sent chunked, never built in memory
        block = b"u" * CHUNK
        for _ in range(size // CHUNK):
            yield block

    return client.post("/bulk/upload", content=body())


def download(client: httpx.Client, mib: int) -> int:
    total = 0
    with client.stream("GET", "/bulk/download", params={"mb": mib}) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(mib * MiB)
        for chunk in r.iter_bytes():
            total += len(chunk)
    return total


def test_200_mb_up_and_down_keep_the_gateway_small(wb: Workbench) -> None:
    client = httpx.Client(base_url=wb.url, trust_env=False, timeout=120)
    with client:
        # Warm up: first use of every code path and its buffers, so growth is the body's.
        assert upload(client, 8 * MiB).text == str(8 * MiB)
        assert download(client, 8) == 8 * MiB

        with RssSampler(wb.pid) as up:
            r = upload(client, SIZE)
        assert (r.status_code, r.text) == (200, str(SIZE))
        assert up.peak - up.before < GROWTH_LIMIT, up

        with RssSampler(wb.pid) as down:
            assert download(client, SIZE // MiB) == SIZE
        assert down.peak - down.before < GROWTH_LIMIT, down

    metrics = wb.app("bulk")
    assert metrics["errors"] == 0 and metrics["requests"] >= 4
