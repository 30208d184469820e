"""What every kind of test shares: waiting for a condition, free ports, project files, raw
HTTP responses, "nothing left running", and a real gateway served from project-file text.

- `wait_until` (async) and `poll` (sync): the one "poll until true, with a deadline" (a
  Pilot test passes `pause=pilot.pause`; `poll(..., ignore=...)` for a thing coming up).
- `project_file`: the one builder of project-file text from tables (apps from tests/apps).
- `read_response`: the one raw HTTP/1.1 response reader (for what httpx would hide).
- `left_running` / `assert_nothing_left`: the one "no process of ours is left" check.
- `serve_config`: a real gateway from project-file text on a free 127.0.0.1 port, for
  extension tests that go through real sockets and the real pipeline without the
  orchestrator (which has its own integration tests with real app processes).

Every other module of tests/support uses these under these names; there are no aliases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import tomlkit

from gateway.config.loader import validate_text
from gateway.config.schema import ServerConfig
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.orchestrator.ports import port_is_free
from gateway.pipeline import GatewayApp, Pipeline
from gateway.requestlog import RequestLog
from gateway.servers.base import ServingHandle
from gateway.servers.registry import BackendRegistry
from gateway.services import Services

T = TypeVar("T")


TESTS_DIR = Path(__file__).resolve().parents[1]
#: The repository root: the `module_path` of the fixture apps, which are `tests.apps.*`
#: (never the tests folder itself: its `gateway`/`workbench` packages would shadow the real ones).
ROOT = TESTS_DIR.parent
HOST = "127.0.0.1"


# --- waiting ------------------------------------------------------------------------------

async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, *,
                     what: str = "condition", interval: float = 0.02,
                     pause: Callable[[float], Awaitable[Any]] | None = None) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that;
    AssertionError naming `what` after `timeout` seconds. `pause` waits between polls
    (default `asyncio.sleep`; a Pilot test passes `pilot.pause`, which lets the app run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await (pause or asyncio.sleep)(interval)


def poll(predicate: Callable[[], T | None], timeout: float = 20.0, *, interval: float = 0.05,
         what: str = "the condition", ignore: tuple[type[BaseException], ...] = ()) -> T:
    """`wait_until` for code without an event loop: call `predicate` until it returns
    something truthy, and return that. Exceptions of the `ignore` types count as "not yet"
    (the thing is still coming up); the last one is shown if time runs out."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}"
                                 + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(size: int = 40) -> tuple[int, int]:
    """`size` consecutive ports free now in 20000-30000 (below Linux's ephemeral range, so
    client sockets do not take them meanwhile), at a random offset so concurrent test runs
    rarely pick the same block. Best effort: nothing reserves them."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - size)
        if all(port_is_free(p) for p in range(base, base + size)):
            return base, base + size - 1
    raise RuntimeError("no free port range in 20000-30000")


# --- project files -------------------------------------------------------------------------

def app_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """An orchestrated app's table with the tests' defaults: `path` /name, `module_path` the
    repository root, `app_path` tests.apps.basic:app (unless it runs a `command`)."""
    out = dict(table)
    out.setdefault("path", f"/{out['name']}")
    out.setdefault("module_path", str(ROOT))
    if "command" not in out:
        out.setdefault("app_path", "tests.apps.basic:app")
    return out


def project_file(*, server: Mapping[str, Any] | None = None,
                 logging: Mapping[str, Any] | None = None,
                 extensions: Sequence[Mapping[str, Any]] = (),
                 apps: Sequence[Mapping[str, Any]] | None = None,
                 orchestration: Mapping[str, Any] | None = None) -> str:
    """Project-file text: `[server]`, `[logging]`, the `extensions`, then (when `apps` is
    given) a process_orchestration extension with `orchestration`'s keys running `apps`."""
    doc: dict[str, Any] = {}
    if server is not None:
        doc["server"] = dict(server)
    if logging is not None:
        doc["logging"] = dict(logging)
    exts = [dict(e) for e in extensions]
    if apps is not None:
        exts.append({"type": "process_orchestration",
                     "config": {**(orchestration or {}), "apps": [app_table(a) for a in apps]}})
    doc["extensions"] = exts
    return tomlkit.dumps(doc)


# --- raw HTTP -------------------------------------------------------------------------------

class BrokenResponse(Exception):
    """The server sent part of a response, or something that is not HTTP/1.1."""


class TruncatedBody(BrokenResponse):
    """A response head arrived, then the connection ended inside the body."""

    def __init__(self, response: RawResponse) -> None:
        super().__init__(f"connection closed inside the body of {response!r}")
        self.response = response


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased; values decoded as latin-1
    body: bytes
    head: bytes  # the raw status line and header block, as received

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.body[:80]!r}>"


async def read_response(reader: asyncio.StreamReader, *, head_request: bool = False
                        ) -> RawResponse | None:
    """One response from `reader`; None if the connection closed before any byte.

    1xx interim responses are skipped. Bodies are framed by Content-Length, chunked coding
    or the end of the connection, as HTTP/1.1 says.
    """
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise BrokenResponse(f"connection closed inside a response head: "
                                 f"{exc.partial[:200]!r}") from None
        except asyncio.LimitOverrunError:
            raise BrokenResponse("response head too large") from None
        except ConnectionError:
            return None
        lines = head[:-4].split(b"\r\n")
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", lines[0])
        if match is None:
            raise BrokenResponse(f"not an HTTP/1.1 status line: {lines[0][:200]!r}")
        status = int(match.group(1))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise BrokenResponse(f"bad header line {line[:200]!r}")
            headers.append((name.strip().lower().decode("latin-1"),
                            value.strip().decode("latin-1")))
        response = RawResponse(status, headers, b"", head)
        if 100 <= status < 200:
            continue
        break
    if head_request or status in (204, 304):
        return response
    try:
        length = response.header("content-length")
        if "chunked" in (response.header("transfer-encoding") or "").lower():
            response.body = await _read_chunked(reader)
        elif length is not None:
            response.body = await reader.readexactly(int(length))
        else:
            response.body = await reader.read()  # delimited by the end of the connection
    except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
        raise TruncatedBody(response) from exc
    return response


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


# --- nothing left running ---------------------------------------------------------------------

def live(proc: psutil.Process) -> bool:
    """True while `proc` (the very process, not a reused pid) runs and is no zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_members(pgids: Iterable[int]) -> list[psutil.Process]:
    """Live processes whose process group is one of `pgids`."""
    groups = set(pgids)
    found = []
    if not groups:
        return found
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups and live(proc):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def descendants() -> list[psutil.Process]:
    """Live (non-zombie) descendants of this test process."""
    return [p for p in psutil.Process().children(recursive=True) if live(p)]


def left_running(pids: Iterable[int | psutil.Process] = (), groups: Iterable[int] = (), *,
                 children: bool = False) -> list[psutil.Process]:
    """What is still running of `pids` (pids, or processes recorded while they ran, which a
    reused pid cannot fool), of the process `groups`, and (`children`) of this process's
    descendants."""
    left: dict[int, psutil.Process] = {}
    for item in pids:
        proc = item
        if not isinstance(proc, psutil.Process):
            try:
                proc = psutil.Process(item)
            except psutil.Error:
                continue
        if live(proc):
            left[proc.pid] = proc
    left.update((p.pid, p) for p in group_members(groups))
    if children:
        left.update((p.pid, p) for p in descendants())
    return list(left.values())


async def assert_nothing_left(pids: Iterable[int | psutil.Process] = (),
                              groups: Iterable[int] = (), *, children: bool = False,
                              timeout: float = 15.0) -> None:
    """Wait up to `timeout` for everything `left_running` names to be gone; else fail
    naming what is left (the caller's cleanup kills it)."""
    pids, groups = list(pids), list(groups)
    try:
        await wait_until(lambda: not left_running(pids, groups, children=children), timeout,
                         what="every process to be gone", interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"processes left behind: {left_running(pids, groups, children=children)}"
        ) from None


# --- a gateway from project-file text ---------------------------------------------------------

@dataclass
class ServedGateway:
    host: str
    port: int
    app: GatewayApp
    services: Services
    handle: ServingHandle | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _transport() -> object:
    from gateway.proxy.transport import PooledTransport

    return PooledTransport()


@contextlib.asynccontextmanager
async def serve_config(text: str, folder: Path) -> AsyncIterator[ServedGateway]:
    """Write `text` as workbench.toml in `folder`, build its pipeline, serve it."""
    path = folder / "workbench.toml"
    path.write_text(text)
    project = validate_text(path, text, environ={})
    events = EventBus()
    services = Services(project=project, events=events, metrics=MetricsRegistry(),
                        request_log=RequestLog(events, project.logging.request_log_size),
                        transport=_transport(), backend=lambda: "builtin")
    pipeline = Pipeline(project.extensions, services)
    app = GatewayApp(pipeline, services)
    await pipeline.startup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    handle = await serve_front(app, sock)
    try:
        yield ServedGateway("127.0.0.1", port, app, services, handle)
    finally:
        await handle.stop(5)
        await pipeline.shutdown()
        await services.transport.aclose()
        sock.close()


async def serve_front(app: Any, sock: socket.socket, **settings: Any) -> ServingHandle:
    """Serve `app` on the listening `sock` with the gateway's built-in front (its default
    server), in the running loop; `settings` are `[server]` keys."""
    config = ServerConfig(host="127.0.0.1", port=0, graceful_timeout=5, **settings)
    return await BackendRegistry.get("builtin").serve_gateway(app, sock, config)
