"""Credentials masked on the way out: exports, the trace view, copies.

The request log keeps requests as they were (masking every request on the hot path would cost
every request for the sake of the few that are looked at); whatever shows or writes a kept
request passes it through `redact_request` first unless the user explicitly asked for the
credentials. HAR files attached to bug reports are a known way tokens and session cookies
leak, which is why browsers' devtools now export them sanitized by default too.

What counts as a credential:

- headers: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` and any
  header whose name says key, token, secret, password, signature or session
  (``X-Api-Key``, ``X-Auth-Token``, ``X-CSRF-Token``...). The authentication scheme
  (``Basic``, ``Bearer``), cookie names and ``Set-Cookie`` attributes stay readable; only the
  secret parts become ``[redacted]``.
- query parameters whose name looks like a token (``token``, ``access_token``, ``api_key``,
  ``key``, ``secret``, ``password``, ``sig``, ``signature``, ``code``...): the value is masked,
  the name kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_HEADER_WORDS = re.compile(
    r"(api-?key|apikey|token|secret|passw(or)?d|signature|session|credential|auth-key)",
    re.IGNORECASE)
_SECRET_QUERY_NAMES = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "api_key",
    "apikey", "api-key", "key", "secret", "client_secret", "password", "passwd", "pwd",
    "pass", "sig", "signature", "code", "session", "sessionid", "jwt", "credential",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential",
})
_SECRET_QUERY_WORDS = re.compile(r"(token|secret|passw|signature|api_?key|credential)",
                                 re.IGNORECASE)


def secret_header(name: str) -> bool:
    """Whether a header (any case) carries a credential."""
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or _SECRET_HEADER_WORDS.search(lowered) is not None


def secret_query_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_QUERY_NAMES or _SECRET_QUERY_WORDS.search(lowered) is not None


def mask_header(name: str, value: str) -> str:
    """`value` with its secret parts masked (unchanged when `name` is not a credential)."""
    lowered = name.lower()
    if not secret_header(lowered):
        return value
    if lowered in ("authorization", "proxy-authorization"):
        scheme, sep, _ = value.strip().partition(" ")
        return f"{scheme} {MASK}" if sep else MASK
    if lowered == "cookie":
        return "; ".join(f"{part.partition('=')[0].strip()}={MASK}"
                         for part in value.split(";") if part.strip())
    if lowered == "set-cookie":
        first, sep, attributes = value.partition(";")
        return f"{first.partition('=')[0].strip()}={MASK}" + (sep + attributes if sep else "")
    return MASK


def mask_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, mask_header(name, value)) for name, value in pairs]


def mask_query(query: str) -> str:
    """A query string with the values of token-like parameters masked."""
    if not query or "=" not in query:
        return query
    out = []
    changed = False
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        if sep and secret_query_name(_unquote_name(name)):
            out.append(f"{name}={MASK}")
            changed = True
        else:
            out.append(part)
    return "&".join(out) if changed else query


def _unquote_name(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    from urllib.parse import unquote_plus

    return unquote_plus(name)


def redact_request(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `RequestRecord.to_dict()` output with credentials masked."""
    out = dict(request)
    out["query"] = mask_query(request.get("query") or "")
    for key in ("request_headers", "response_headers"):
        out[key] = mask_headers(request.get(key) or ())
    return out
