"""A plain WSGI app (wrapped with a2wsgi by the loader)."""

from __future__ import annotations

import json
import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/log":
        print("wsgi printed inside a request")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"logged"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    data = {"kind": "wsgi", "path": path, "script_name": environ.get("SCRIPT_NAME", ""),
            "query": environ.get("QUERY_STRING", ""), "method": environ["REQUEST_METHOD"],
            "body": body.decode(), "pid": os.getpid()}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(data).encode()]
