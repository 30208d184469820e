"""StaticFiles called directly as ASGI: server extensions and client disconnects, which a
uvicorn-served test cannot show (uvicorn has no pathsend, and hides disconnects from send)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gateway.routing.staticfiles import PATHSEND, StaticFiles


def scope(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": [], **extra}


class Recorder:
    """Fake ASGI receive/send; with `disconnect_after`, the client leaves once that many body
    messages have been sent."""

    def __init__(self, disconnect_after: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.disconnect_after = disconnect_after
        self.received = 0
        self._gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.disconnect_after is not None and len(self.bodies()) >= self.disconnect_after:
            self._gone.set()

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        if self.received == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]


async def test_whole_file_uses_pathsend_when_offered(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    files = StaticFiles(tmp_path)
    rec = Recorder()
    await files(scope("/a.txt", extensions={PATHSEND: {}}), rec.receive, rec.send)
    start, body = rec.messages
    assert start["status"] == 200
    assert body == {"type": PATHSEND, "path": str((tmp_path / "a.txt").resolve())}


async def test_ranges_and_head_do_not_use_pathsend(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    files = StaticFiles(tmp_path)
    rec = Recorder()
    await files(scope("/a.txt", extensions={PATHSEND: {}},
                      headers=[(b"range", b"bytes=1-2")]), rec.receive, rec.send)
    assert rec.messages[0]["status"] == 206 and rec.bodies() == [b"el"]
    rec = Recorder()
    await files(scope("/a.txt", method="HEAD", extensions={PATHSEND: {}}), rec.receive,
                rec.send)
    assert rec.bodies() == [b""]


async def test_streaming_stops_when_the_client_disconnects(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (64 * 1024 * 50))
    files = StaticFiles(tmp_path)
    rec = Recorder(disconnect_after=2)
    await files(scope("/big.bin"), rec.receive, rec.send)
    assert 2 <= len(rec.bodies()) < 50


async def test_chunks_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"y" * (64 * 1024 * 3 + 5))
    rec = Recorder()
    await StaticFiles(tmp_path)(scope("/big.bin"), rec.receive, rec.send)
    sizes = [len(b) for b in rec.bodies()]
    assert sizes == [65536, 65536, 65536, 5]
    assert [m.get("more_body") for m in rec.messages[1:]] == [True, True, True, False]


async def test_fifo_is_not_served(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    rec = Recorder()
    await StaticFiles(tmp_path)(scope("/pipe"), rec.receive, rec.send)
    assert rec.messages[0]["status"] == 404


def test_repr_and_exclusions(tmp_path: Path) -> None:
    files = StaticFiles(tmp_path, spa_fallback=True, exclude_patterns=["/api/", "*.map"])
    assert "spa" in repr(files) and str(tmp_path.resolve()) in repr(files)
    assert files.excluded("/api/x") and files.excluded("/a/b.js.map")
    assert not files.excluded("/apix") and not files.excluded("/app")


async def test_spa_index_symlinked_out_of_root_is_404(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "outside.html").write_bytes(b"SECRET")
    os.symlink(tmp_path / "outside.html", tmp_path / "site" / "index.html")
    rec = Recorder()
    await StaticFiles(tmp_path / "site", spa_fallback=True)(scope("/route"), rec.receive,
                                                            rec.send)
    assert rec.messages[0]["status"] == 404
    assert b"SECRET" not in b"".join(rec.bodies())
