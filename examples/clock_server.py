"""Any program can be an app: this one is stdlib http.server, listening on $PORT."""

from __future__ import annotations

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"ok" if self.path == "/health" else time.strftime("%H:%M:%S\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        if self.path == "/health":
            return  # health probes every few seconds would drown the log
        print(f"clock: {self.command} {self.path} rid={self.headers.get('X-Request-ID')}",
              flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
