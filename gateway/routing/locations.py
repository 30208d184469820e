"""Location selection with nginx's rules, compiled once per configuration.

nginx picks a location in this order (``ngx_http_core_find_location``):

1. an exact location (``=/p``) equal to the path wins outright;
2. otherwise the longest matching prefix is remembered; if it is a ``^~`` prefix, it wins
   and regexes are not tried;
3. otherwise the first regex (``~re``, ``~*re``) in file order that matches wins;
4. otherwise the remembered longest prefix wins.

Before 2, as nginx's ``auto_redirect``: a path that names no location itself but is the name
of a prefix or exact location ending in ``/`` without that slash (``/api`` for
``location /api/``) gets a redirect to the location's name, when the table was told that
location's value wants one (nginx does this for ``proxy_pass`` locations).

``__default__`` is our addition: it is used when nothing above matched. The table is generic
over what a location carries, so the selection rules can be tested without any action.

Paths are the normalised request path as bytes (`gateway.routing.uri.normalise`), and
regexes are compiled as bytes patterns, as nginx's PCRE runs without UTF mode: ``.`` and
character classes count bytes, ``~*`` and ``\\w`` know only ASCII letters. A pattern's
non-ASCII text is matched as its UTF-8 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Generic, TypeVar

from gateway.routing.uri import to_text

T = TypeVar("T")

DEFAULT_PATTERN = "__default__"


class LocationKind(StrEnum):
    EXACT = "="
    PREFIX_STOP = "^~"
    REGEX = "~"
    REGEX_NOCASE = "~*"
    PREFIX = ""
    DEFAULT = DEFAULT_PATTERN

    @property
    def is_prefix(self) -> bool:
        return self in (LocationKind.PREFIX, LocationKind.PREFIX_STOP)

    @property
    def is_regex(self) -> bool:
        return self in (LocationKind.REGEX, LocationKind.REGEX_NOCASE)


def parse_pattern(pattern: str) -> tuple[LocationKind, str]:
    """Split a location pattern into its kind and its text (path, prefix or regex).

    Whitespace after ``~``/``~*`` is dropped, so nginx's ``~ \\.php$`` spelling works too.
    """
    if pattern == DEFAULT_PATTERN:
        return LocationKind.DEFAULT, ""
    if pattern.startswith("~*"):
        return LocationKind.REGEX_NOCASE, pattern[2:].lstrip()
    if pattern.startswith("~"):
        return LocationKind.REGEX, pattern[1:].lstrip()
    if pattern.startswith("^~/"):
        return LocationKind.PREFIX_STOP, pattern[2:]
    if pattern.startswith("=/"):
        return LocationKind.EXACT, pattern[1:]
    if pattern.startswith("/"):
        return LocationKind.PREFIX, pattern
    raise ValueError(f"{pattern!r}: a location starts with /, =/, ^~/, ~, ~* or is __default__")


def compile_regex(kind: LocationKind, text: str) -> re.Pattern[bytes]:
    """A regex location's pattern, compiled to match normalised path bytes; re.error if it
    is not a valid regex (the project file check reports it)."""
    flags = re.IGNORECASE if kind is LocationKind.REGEX_NOCASE else 0
    return re.compile(text.encode("utf-8"), flags)


class Location(Generic[T]):
    """One compiled location: its pattern as written, its kind and what it carries. `key` is
    the path or prefix of an exact or prefix location as the bytes a path is compared with."""

    __slots__ = ("pattern", "kind", "text", "value", "order", "key", "regex")

    def __init__(self, pattern: str, kind: LocationKind, text: str, value: T, order: int,
                 key: bytes = b"", regex: re.Pattern[bytes] | None = None) -> None:
        self.pattern = pattern
        self.kind = kind
        self.text = text
        self.value = value
        self.order = order
        self.key = key
        self.regex = regex

    def __repr__(self) -> str:
        return f"<Location {self.pattern!r} #{self.order}>"


class LocationMatch(Generic[T]):
    """The selected location for one path.

    ``prefix`` is the part of the path the location consumed: the prefix for prefix
    locations, the whole path for an exact location, ``b"/"`` for ``__default__`` (which acts
    like nginx's ``location /``), and ``b""`` for a regex. ``groups`` holds a regex's named
    groups as text (`uri.to_text`), with ``""`` for a group that did not take part.
    ``redirect`` is set when the answer is a redirect to the location's name (see above).
    """

    __slots__ = ("location", "groups", "prefix", "redirect")

    def __init__(self, location: Location[T], groups: dict[str, str] | None = None,
                 prefix: bytes = b"", redirect: bool = False) -> None:
        self.location = location
        self.groups: dict[str, str] = groups if groups is not None else {}
        self.prefix = prefix
        self.redirect = redirect

    @property
    def value(self) -> T:
        return self.location.value

    @property
    def pattern(self) -> str:
        return self.location.pattern

    def __repr__(self) -> str:
        return (f"<LocationMatch {self.location.pattern!r} prefix={self.prefix!r}"
                f"{' redirect' if self.redirect else ''}>")


class LocationTable(Generic[T]):
    """All locations of one configuration, arranged for selection without per-request work.

    Prefixes are kept longest first, so the first one that matches is the longest; regexes are
    kept in file order and compiled here, once.
    """

    __slots__ = ("_exact", "_prefixes", "_regexes", "_default", "_count", "_slash")

    def __init__(self, entries: Iterable[tuple[str, T]], *,
                 slash_redirect: Callable[[T], bool] | None = None) -> None:
        self._exact: dict[bytes, Location[T]] = {}
        prefixes: list[Location[T]] = []
        regexes: list[tuple[re.Pattern[bytes], Location[T]]] = []
        self._default: Location[T] | None = None
        seen_prefixes: set[bytes] = set()
        count = 0
        for order, (pattern, value) in enumerate(entries):
            count += 1
            kind, text = parse_pattern(pattern)
            regex = compile_regex(kind, text) if kind.is_regex else None
            key = text.encode("utf-8")
            loc = Location(pattern, kind, text, value, order, key, regex)
            if kind is LocationKind.EXACT:
                self._exact.setdefault(key, loc)
            elif kind.is_prefix:
                # nginx refuses `/p` next to `^~/p`; we keep the first one written.
                if key not in seen_prefixes:
                    seen_prefixes.add(key)
                    prefixes.append(loc)
            elif regex is not None:
                regexes.append((regex, loc))
            elif self._default is None:
                self._default = loc
        # Stable sort: equal lengths cannot both match unless equal, which was deduplicated.
        self._prefixes: tuple[Location[T], ...] = tuple(
            sorted(prefixes, key=lambda loc: -len(loc.key)))
        self._regexes = tuple(regexes)
        self._count = count
        named = {loc.key for loc in prefixes} | set(self._exact)
        self._slash: dict[bytes, Location[T]] = {}
        if slash_redirect is not None:
            for loc in (*self._exact.values(), *prefixes):
                short = loc.key[:-1]
                if loc.key.endswith(b"/") and short and short not in named \
                        and slash_redirect(loc.value):
                    self._slash.setdefault(short, loc)

    def select(self, path: bytes) -> LocationMatch[T] | None:
        """The location for `path` (a normalised request path), or None when none applies."""
        exact = self._exact.get(path)
        if exact is not None:
            return LocationMatch(exact, prefix=path)
        if self._slash:
            wants_slash = self._slash.get(path)
            if wants_slash is not None:
                return LocationMatch(wants_slash, prefix=path, redirect=True)
        longest: Location[T] | None = None
        for loc in self._prefixes:
            if path.startswith(loc.key):
                longest = loc
                break
        if longest is not None and longest.kind is LocationKind.PREFIX_STOP:
            return LocationMatch(longest, prefix=longest.key)
        for regex, loc in self._regexes:
            m = regex.search(path)
            if m is not None:
                groups = {k: to_text(v) if v is not None else ""
                          for k, v in m.groupdict().items()}
                return LocationMatch(loc, groups=groups)
        if longest is not None:
            return LocationMatch(longest, prefix=longest.key)
        if self._default is not None:
            return LocationMatch(self._default, prefix=b"/")
        return None

    def __iter__(self) -> Iterator[Location[T]]:
        """Locations in selection-table order: exact, prefixes (longest first), regexes,
        default. Used by diagnostics and tests."""
        yield from self._exact.values()
        yield from self._prefixes
        yield from (loc for _, loc in self._regexes)
        if self._default is not None:
            yield self._default

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (f"<LocationTable exact={len(self._exact)} prefixes={len(self._prefixes)} "
                f"regexes={len(self._regexes)} default={self._default is not None}>")
