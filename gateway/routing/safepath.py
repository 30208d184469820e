"""Turning a normalised request path into path segments under a static root.

The normaliser (`gateway.routing.uri.normalise`) has already resolved ``.`` and ``..`` and
merged slashes as nginx does (a ``..`` above the root is a 400 there), so a normalised path
cannot climb out of the root by its spelling. What is decided here are the answers stricter than
nginx's, listed in the README's "Differences from the contract": a request target with an
encoded separator (``%2f``, ``%5c``) is refused rather than served as if the separator were
written, a backslash or control character in the path is refused, and hidden names stay
invisible. The final containment check against the real root (after resolving symlinks)
lives in `staticfiles`, because only the file system can answer it.
"""

from __future__ import annotations

import re

#: Percent-encoded slash and backslash in a raw request target (any case).
_ENCODED_SEPARATOR = re.compile(rb"%(?:2f|5c)", re.IGNORECASE)
#: Characters never allowed in a decoded segment: backslash (a separator on Windows and in
#: many tools), the C0 controls, DEL.
_FORBIDDEN_CHARS = re.compile(r"[\\\x00-\x1f\x7f]")

#: Hidden names that are meant to be public (RFC 8615 well-known URIs).
PUBLIC_HIDDEN = frozenset({".well-known"})


class UnsafePath(Exception):
    """The request path hides a separator in its encoding or holds a backslash or control
    character (403)."""


class HiddenPath(Exception):
    """The path names a dotfile or dot-directory; answered 404 so it stays invisible."""


def safe_segments(path: str, raw_path: bytes | None = None, *,
                  allow_hidden: bool = False) -> list[str]:
    """The segments of `path`, a normalised path (no ``.``, ``..`` or empty segments left),
    checked for encoded separators in `raw_path` (the target as sent), forbidden characters
    and hidden names."""
    if raw_path is not None and _ENCODED_SEPARATOR.search(raw_path):
        raise UnsafePath("encoded separator in the path")
    if _FORBIDDEN_CHARS.search(path):
        raise UnsafePath("backslash or control character in the path")
    segments = [seg for seg in path.split("/") if seg]
    if not allow_hidden:
        for seg in segments:
            if seg[0] == "." and seg not in PUBLIC_HIDDEN:
                raise HiddenPath(seg)
    return segments
