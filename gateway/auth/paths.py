"""Which request paths an `auth` entry covers: `paths` (default: all) minus `exclude_paths`.

A pattern with glob characters (``*?[``) matches the whole path (``*`` crosses ``/``:
``/static/*``, ``*.css``); a plain one matches that path and everything below it, on a
segment boundary: ``/public`` covers ``/public`` and ``/public/x`` but not ``/publicity``
(PyFrame's ``startswith`` would let ``/publicity-admin`` through an exclusion).

The gateway hands every extension the normalised path (`gateway.routing.uri.canonicalise`:
no ``//``, ``.`` or ``..`` left), so patterns see what nginx's locations see. A path that is
still not in one canonical spelling (a backslash or a control character, which nginx keeps
too; or a caller that skipped the gateway's entry) is always covered, whatever the patterns
say: such a spelling must never be how a request walks past authentication.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

_NOT_CANONICAL = re.compile(r"//|/\.\.?(?:/|$)|[\\\x00-\x1f\x7f]")
_GLOB_CHARS = frozenset("*?[")


def _pattern(p: str) -> str:
    if _GLOB_CHARS & set(p):
        return fnmatch.translate(p)
    base = p.rstrip("/")
    if not base:
        return r"(?s:/.*)\Z"
    return rf"(?s:{re.escape(base)}(?:/.*)?)\Z"


def _compile(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(_pattern(p) for p in patterns))


class PathRules:
    """`covers(path)`: whether a request for `path` must authenticate."""

    __slots__ = ("_only", "_exclude", "paths", "exclude_paths")

    def __init__(self, paths: Sequence[str] = (), exclude_paths: Sequence[str] = ()) -> None:
        self.paths = tuple(paths)
        self.exclude_paths = tuple(exclude_paths)
        self._only = _compile(self.paths)
        self._exclude = _compile(self.exclude_paths)

    def covers(self, path: str) -> bool:
        if self._only is None and self._exclude is None:
            return True
        if _NOT_CANONICAL.search(path):
            return True
        if self._only is not None and self._only.match(path) is None:
            return False
        return self._exclude is None or self._exclude.match(path) is None

    def __repr__(self) -> str:
        return f"<PathRules paths={list(self.paths)} exclude={list(self.exclude_paths)}>"
