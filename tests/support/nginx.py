"""Real nginx as a test oracle: a non-daemon child on 127.0.0.1, in a private prefix folder.

`running_nginx` writes ``nginx.conf`` (the caller's ``http`` block contents), starts
``nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g 'daemon off;'`` with one process
(``master_process off``: nothing to switch users to, no worker left behind), waits until
it accepts connections and stops it by its PID. Tests skip when nginx is not installed; CI
installs it (.ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.harness import free_port, wait_until

#: Debian puts nginx in /usr/sbin, which is not on every user's PATH.
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
SKIP_REASON = "nginx is not installed (apt-get install nginx): it is the oracle of this test"

CONF = """\
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
{body}
}}
"""


def _write_conf(folder: Path, http_body: str) -> tuple[int, Path]:
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(CONF.format(dir=folder, body=http_body.replace("{port}", str(port))))
    return port, conf


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def running_nginx(folder: Path, http_body: str) -> AsyncIterator[int]:
    """Serve `http_body` (server blocks; ``{port}`` is replaced by the chosen port) with
    real nginx; yields the port."""
    assert NGINX is not None, SKIP_REASON
    port, conf = _write_conf(folder, http_body)
    args = ["-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    check = await asyncio.create_subprocess_exec(NGINX, "-t", "-q", *args,
                                                 stdout=PIPE, stderr=PIPE)
    _, err = await asyncio.wait_for(check.communicate(), 30)
    assert check.returncode == 0, f"nginx refused the generated config:\n{err.decode()}"
    proc = await asyncio.create_subprocess_exec(NGINX, *args, "-g", "daemon off;",
                                                stdout=DEVNULL, stderr=PIPE)
    try:
        async def up() -> bool:
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"nginx exited with {proc.returncode}: {err.decode()}")
            return await _accepts(port)

        await wait_until(up, 15.0, what=f"nginx to accept on 127.0.0.1:{port}")
        yield port
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
