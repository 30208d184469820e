"""Content types for static files, the same on every machine.

`mimetypes.guess_type` reads the system's ``/etc/mime.types``, so the answer for ``.js`` or
``.wasm`` differs between hosts (and Python versions). We use our own table for web formats,
then Python's built-in table (a private `MimeTypes`, which skips the system files).
"""

from __future__ import annotations

import mimetypes
import os.path
from functools import lru_cache

_WEB_TYPES: dict[str, str] = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css",
    ".js": "application/javascript", ".mjs": "application/javascript",
    ".cjs": "application/javascript", ".json": "application/json",
    ".map": "application/json", ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml", ".wasm": "application/wasm", ".txt": "text/plain",
    ".md": "text/markdown", ".csv": "text/csv", ".xml": "application/xml",
    ".ico": "image/x-icon", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".pdf": "application/pdf",
}

#: Non-``text/*`` types whose content is text; they get ``charset=utf-8`` too.
_TEXTUAL = frozenset({
    "application/javascript", "application/json", "application/manifest+json",
    "application/xml", "image/svg+xml",
})

DEFAULT_TYPE = "application/octet-stream"

_builtin = mimetypes.MimeTypes()


def content_type(path: str) -> str:
    """The Content-Type header value for a file name, with a charset for text types."""
    return _for_extension(os.path.splitext(path)[1].lower())


@lru_cache(maxsize=512)
def _for_extension(ext: str) -> str:
    ctype = _WEB_TYPES.get(ext)
    if ctype is None:
        ctype = _builtin.guess_type("x" + ext, strict=False)[0] if ext else None
        ctype = ctype or DEFAULT_TYPE
    if ctype.startswith("text/") or ctype in _TEXTUAL:
        return ctype + "; charset=utf-8"
    return ctype
