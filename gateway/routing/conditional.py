"""Validators, conditional requests and byte ranges for static files (RFC 9110 §8.8, §13, §14).

Pure functions over header values, so the rules are testable without a file or a socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime


def make_etag(mtime_ns: int, size: int) -> str:
    """A strong validator from modification time and size (nginx builds its ETag the same
    way). Strong, so it can also validate ``If-Range``."""
    return f'"{mtime_ns:x}-{size:x}"'


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP date, or None when it cannot be read (the header
    is then ignored, as RFC 9110 §13.1.3 asks)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # RFC 850/asctime forms carry no zone; HTTP dates are GMT
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def none_match(header: str, etag: str) -> bool:
    """True when ``If-None-Match`` matches `etag` (weak comparison, ``*`` matches any)."""
    header = header.strip()
    if header == "*":
        return True
    ours = _opaque(etag)
    return any(_opaque(t.strip()) == ours for t in header.split(",") if t.strip())


def not_modified(headers: dict[str, str], etag: str, mtime: int) -> bool:
    """Whether a GET/HEAD may be answered 304. ``If-Modified-Since`` only counts when there is
    no ``If-None-Match`` (RFC 9110 §13.1.3)."""
    inm = headers.get("if-none-match")
    if inm is not None:
        return none_match(inm, etag)
    ims = headers.get("if-modified-since")
    if ims is not None:
        since = parse_http_date(ims)
        return since is not None and mtime <= since
    return False


def if_range_allows(value: str, etag: str, mtime: int) -> bool:
    """``If-Range``: the range applies only when the validator still matches. An entity tag
    compares strongly (a weak tag never matches); a date must equal Last-Modified."""
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    when = parse_http_date(value)
    return when is not None and when == mtime


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``start..end`` of a representation of ``size`` bytes."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


#: One range-spec as nginx's range filter reads it: spaces around the numbers, ASCII digits,
#: no space between ``-`` and a suffix length.
_RANGE_SPEC = re.compile(r" *(?:([0-9]+) *- *([0-9]*)|-([0-9]+)) *", re.ASCII)
_MAX_OFFSET = 2**63 - 1  # nginx's off_t; a longer number is refused as an overflow


class Unsatisfiable(Exception):
    """The Range header is malformed, or no byte of it lies within the file (416)."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """The single range a ``Range`` header asks for, or None to serve the whole file.

    As nginx's range filter (``ngx_http_range_parse``): a header that does not start with
    ``bytes=`` is ignored; a malformed range, or one that starts past the end, raises
    :class:`Unsatisfiable` (416); a range starting at 0 of an empty file serves it whole.
    Several ranges (a ``,``) get None: we answer them with the full 200 rather than a
    multipart/byteranges body, which is always correct, and browsers and download tools
    only ever ask for one range.
    """
    if header[:6].lower() != "bytes=":
        return None
    spec = header[6:]
    if "," in spec:
        return None
    m = _RANGE_SPEC.fullmatch(spec)
    if m is None:
        raise Unsatisfiable
    first, last, suffix = m.group(1), m.group(2), m.group(3)
    if suffix is not None:
        length = int(suffix)
        if length > _MAX_OFFSET:
            raise Unsatisfiable
        start, end = (size - length if length < size else 0), size
    else:
        start = int(first)
        if start > _MAX_OFFSET or (last and int(last) > _MAX_OFFSET):
            raise Unsatisfiable
        end = size if not last or int(last) >= size else int(last) + 1
    if start < end:
        return ByteRange(start, end - 1)
    if start == 0:
        return None
    raise Unsatisfiable
