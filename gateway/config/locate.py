"""Map TOML key paths to the line and column where they are written.

tomlkit keeps comments and formatting but not positions, so error messages get their
``file:line:col`` from this small scanner. It follows table headers (``[a.b]``, ``[[a.b]]``,
counting array-of-table instances the way TOML does), ``key = value`` lines and keys inside
one-line inline tables. It only has to be right for valid TOML: tomlkit reports syntax errors
with their own positions.
"""

from __future__ import annotations

import re

PathKey = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_KEY = rf"(?:{_BARE}|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?")
_KEYLINE_RE = re.compile(rf"^(\s*)({_DOTTED})\s*=")
_INLINE_KEY_RE = re.compile(rf"(?:[{{,]\s*)({_DOTTED})\s*=")
_PART_RE = re.compile(_KEY)


def split_key(dotted: str) -> list[str]:
    parts = []
    for m in _PART_RE.finditer(dotted):
        raw = m.group(0)
        if raw[0] == '"':
            raw = bytes(raw[1:-1], "utf-8").decode("unicode_escape")
        elif raw[0] == "'":
            raw = raw[1:-1]
        parts.append(raw)
    return parts


class Locations:
    """Positions of every key path found in a TOML text."""

    def __init__(self, text: str) -> None:
        self._pos: dict[PathKey, tuple[int, int]] = {}
        self._scan(text)

    def find(self, path: PathKey) -> tuple[int, int]:
        """Line and column of `path`, or of its nearest written ancestor; (0, 0) if none."""
        p = tuple(path)
        while p:
            if p in self._pos:
                return self._pos[p]
            p = p[:-1]
        return (0, 0)

    def _scan(self, text: str) -> None:
        current: PathKey = ()
        aot_count: dict[PathKey, int] = {}
        in_multiline: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if in_multiline in line:
                    in_multiline = None
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            header = _HEADER_RE.match(line)
            if header and not _KEYLINE_RE.match(line):
                keys = split_key(header.group(2))
                concrete: PathKey = ()
                for i, k in enumerate(keys):
                    concrete = concrete + (k,)
                    last = i == len(keys) - 1
                    if last and header.group(1) == "[[":
                        n = aot_count.get(concrete, 0)
                        aot_count[concrete] = n + 1
                        self._pos.setdefault(concrete, (lineno, 1))
                        concrete = concrete + (n,)
                    elif not last and concrete in aot_count:
                        concrete = concrete + (aot_count[concrete] - 1,)
                current = concrete
                self._pos[current] = (lineno, 1)
                continue
            keyline = _KEYLINE_RE.match(line)
            if keyline:
                base = current + tuple(split_key(keyline.group(2)))
                self._pos.setdefault(base, (lineno, len(keyline.group(1)) + 1))
                rest = line[keyline.end():]
                offset = keyline.end()
                for m in _INLINE_KEY_RE.finditer(rest):
                    sub = base + tuple(split_key(m.group(1)))
                    self._pos.setdefault(sub, (lineno, offset + m.start(1) + 1))
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_multiline = quote
