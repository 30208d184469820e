"""A plain WSGI app (no framework): a guest book kept in memory."""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

log = logging.getLogger("demo.guestbook")
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
ENTRIES: list[str] = ["hello from the WSGI demo"]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/" and environ["REQUEST_METHOD"] == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode())
        text = form.get("text", [""])[0].strip()[:200]
        if text:
            ENTRIES.append(text)
            log.info("new entry (%d total)", len(ENTRIES))
        start_response("303 See Other", [("Location", environ.get("SCRIPT_NAME", "") + "/")])
        return [b""]
    if path == "/":
        items = "".join(f"<li>{html.escape(e)}</li>" for e in ENTRIES)
        body = (f"<!doctype html><title>Guest book</title><h1>Guest book</h1><ul>{items}</ul>"
                "<form method=post><input name=text><button>Sign</button></form>").encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
