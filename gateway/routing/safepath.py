"""Turning a request path into path segments under a static root, refusing every escape.

Two views of the path are checked, because servers decode differently: the raw bytes from the
request line (``scope["raw_path"]``) must not carry an encoded separator or NUL (``%2f``,
``%5c``, ``%00``), which would otherwise become a real ``/`` in the decoded path and dodge a
segment check; the decoded path (``scope["path"]``) must not contain a ``..`` segment, a
backslash or a control character. The final containment check against the real root (after
resolving symlinks) lives in `staticfiles`, because only the file system can answer it.
"""

from __future__ import annotations

import re

#: Percent-encoded slash, backslash and NUL in a raw request target (any case).
_ENCODED_FORBIDDEN = re.compile(rb"%(?:2f|5c|00)", re.IGNORECASE)
#: Characters never allowed in a decoded segment: backslash (a separator on Windows and in
#: many tools), NUL and the other C0 controls, DEL.
_FORBIDDEN_CHARS = re.compile(r"[\\\x00-\x1f\x7f]")

#: Hidden names that are meant to be public (RFC 8615 well-known URIs).
PUBLIC_HIDDEN = frozenset({".well-known"})


class UnsafePath(Exception):
    """The request path tries to leave the root or hides something in its encoding (403)."""


class HiddenPath(Exception):
    """The path names a dotfile or dot-directory; answered 404 so it stays invisible."""


def safe_segments(path: str, raw_path: bytes | None = None, *,
                  allow_hidden: bool = False) -> list[str]:
    """The non-empty segments of `path`, checked for traversal and hidden names.

    ``.`` segments are dropped (they stay where they are); ``..`` is refused rather than
    resolved, so a file is reachable by exactly one spelling.
    """
    if raw_path is not None and _ENCODED_FORBIDDEN.search(raw_path):
        raise UnsafePath("encoded separator or NUL in the path")
    if _FORBIDDEN_CHARS.search(path):
        raise UnsafePath("backslash or control character in the path")
    segments = []
    for seg in path.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            raise UnsafePath("'..' segment in the path")
        if seg[0] == "." and not allow_hidden and seg not in PUBLIC_HIDDEN:
            raise HiddenPath(seg)
        segments.append(seg)
    return segments
