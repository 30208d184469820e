"""The local control channel: a Unix socket in the project folder that only its owner opens.

One JSON object per line each way. `pyserve-tui status|restart|stop|start|backend|reload`
are clients of it. The wire protocol lives here, in `handle_command`: the engine only offers
its commands and knows nothing of the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ControlError, GatewayError

if TYPE_CHECKING:
    from gateway.engine import Engine

log = logging.getLogger("pyserve.control")
MAX_LINE = 64 * 1024


def control_socket_path(config_path: str | Path) -> Path:
    """`.pyserve-tui.<name>.sock` beside the project file (hashed into /tmp if too long)."""
    config = Path(config_path).resolve()
    path = config.parent / f".pyserve-tui.{config.stem}.sock"
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(config)).hexdigest()[:16]
    return Path(f"/tmp/pyserve-tui-{os.getuid()}-{digest}.sock")


class ControlServer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = control_socket_path(engine.config_path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.exists():
            if _alive(self.path):
                raise ControlError(f"another pyserve-tui already runs this project ({self.path})")
            self.path.unlink()
        old = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError:
                answer: dict[str, Any] = {"ok": False, "error": "bad request"}
            else:
                try:
                    answer = await handle_command(self.engine, request)
                except GatewayError as exc:
                    answer = {"ok": False, "error": str(exc)}
                except Exception as exc:
                    log.exception("control command %r failed", request)
                    answer = {"ok": False, "error": f"internal error: {exc}"}
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def __repr__(self) -> str:
        return f"<ControlServer {self.path} {'open' if self._server else 'closed'}>"


async def handle_command(engine: Engine, request: Mapping[str, Any]) -> dict[str, Any]:
    """One control-channel request -> its JSON answer (engine errors propagate)."""
    cmd = request.get("cmd")
    app = request.get("app")
    if cmd == "status":
        return {"ok": True, "metrics": engine.metrics().to_json(),
                "address": list(engine.address), "backend": engine.backend}
    if cmd in ("restart", "stop", "start"):
        if not isinstance(app, str):
            return {"ok": False, "error": f"{cmd} needs an app name"}
        command = {"restart": engine.restart_app, "stop": engine.stop_app,
                   "start": engine.start_app}[cmd]
        if await command(app) is False:  # only a restart says so
            assert engine.orchestrator is not None
            cause = engine.orchestrator.get(app).last_error
            return {"ok": False, "error": f"restart {app}: the new process failed "
                                          f"({cause}); the old one keeps serving"}
        return {"ok": True, "message": f"{cmd}: {app}"}
    if cmd == "backend":
        name = request.get("name")
        if not isinstance(name, str):
            return {"ok": False, "error": "backend needs a name"}
        await engine.switch_backend(name)
        return {"ok": True, "message": f"backend: {engine.backend}"}
    if cmd == "reload":
        event = await engine.reload()
        return {"ok": True, "message": json.dumps({"added": event.added,
                                                   "removed": event.removed,
                                                   "changed": event.changed,
                                                   "pending": event.pending})}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def send_command(config_path: str | Path, request: dict[str, Any],
                 timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to the instance running `config_path`; ControlError if none."""
    path = control_socket_path(config_path)
    if not path.exists():
        raise ControlError(f"no pyserve-tui instance is running for {Path(config_path)}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionRefusedError, FileNotFoundError):
            raise ControlError(
                f"no pyserve-tui instance is running for {Path(config_path)}") from None
        except OSError as exc:
            raise ControlError(f"control channel failed: {exc}") from None
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError("the running instance sent no answer") from None
    return answer
