"""Not an ASGI app: a plain program serving HTTP on $PORT (for `command` apps).

With $IGNORE_SIGTERM set it ignores SIGTERM, to test the SIGKILL after shutdown_timeout.
`GET /close-and-exit` closes the listening socket, answers, and exits 0.1 s later: for that
moment the app refuses connections while its process is still alive (a crash in progress).
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/close-and-exit":
            self.server.socket.close()  # new connections are refused from now on
            threading.Thread(target=_exit_soon, daemon=True).start()
        body = (b"ok" if self.path == "/health" else json.dumps(
            {"kind": "command", "path": self.path, "pid": os.getpid(),
             "cwd": os.getcwd(), "prefix": os.environ.get("PYSERVE_TUI_PREFIX"),
             "uvicorn_root_path": os.environ.get("UVICORN_ROOT_PATH")}).encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("command server:", format % args, flush=True)


def _exit_soon() -> None:
    time.sleep(0.1)
    os._exit(3)


if __name__ == "__main__":
    if os.environ.get("IGNORE_SIGTERM"):  # a program that will not stop when asked
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print(f"command server listening on {server.server_port}", flush=True)
    server.serve_forever()
