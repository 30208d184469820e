"""Basic authentication against htpasswd hashes.

The formats `htpasswd` writes and people already have: bcrypt (``htpasswd -B``, ``$2y$``;
``$2a$``/``$2b$`` too) through the `bcrypt` package, ``{SHA}`` (``htpasswd -s``:
base64 of SHA-1, computed by hashlib and compared with `hmac.compare_digest`) and Apache's
MD5 ``$apr1$`` (``htpasswd -m``, the default of older htpasswd) through `libpass`, the
maintained fork of passlib. No crypto primitive is written here.

bcrypt is slow on purpose (tens to hundreds of milliseconds per check), so:

- every check of a slow hash runs in a small thread pool of its own, never on the event loop
  (nor in the loop's default executor, which static files use), and at most
  `MAX_PENDING` checks wait for it: beyond that the request is answered 503 at once;
- a credential that was verified is remembered for `CACHE_TTL` seconds in a bounded LRU keyed
  by an HMAC of the credential under a key made at start (the password itself is never kept),
  so a logged-in browser, which sends the same header with every request, costs one bcrypt
  per few minutes, not one per request;
- a user name that does not exist is checked against a dummy hash of the same cost, so the
  answer takes as long as for a wrong password and does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

from gateway.auth import MissingLibrary, need

#: Remembered successful credentials, and for how long.
CACHE_SIZE = 1024
CACHE_TTL = 300.0
#: Checks of slow hashes that may wait for the pool before new ones are refused (503).
MAX_PENDING = 64
#: bcrypt reads at most 72 bytes of a password (htpasswd and Apache truncate the same way).
_BCRYPT_MAX = 72


class HashFormat(StrEnum):
    BCRYPT = "bcrypt"
    SHA = "{SHA}"
    APR1 = "$apr1$"


def hash_format(stored: str) -> HashFormat | None:
    if stored.startswith(("$2y$", "$2b$", "$2a$")) and len(stored) == 60:
        return HashFormat.BCRYPT
    if stored.startswith("{SHA}"):
        try:
            if len(base64.b64decode(stored[5:], validate=True)) == 20:
                return HashFormat.SHA
        except (binascii.Error, ValueError):
            return None
        return None
    if stored.startswith("$apr1$"):
        return HashFormat.APR1
    return None


def check_hash(stored: str) -> str | None:
    """Why `stored` cannot be used (unknown format, library missing), or None."""
    fmt = hash_format(stored)
    if fmt is None:
        return ("is not a hash htpasswd writes (bcrypt '$2y$...', '{SHA}...' or "
                "'$apr1$...'); make one with: htpasswd -nB USER")
    try:
        if fmt is HashFormat.BCRYPT:
            need("bcrypt", "bcrypt")
        elif fmt is HashFormat.APR1:
            passlib_hash = need("passlib.hash", "libpass")
            if not passlib_hash.apr_md5_crypt.identify(stored):
                return "is not a valid '$apr1$' hash"
    except MissingLibrary as exc:
        return f"a {fmt.value} hash {exc}"
    return None


def verify_password(password: bytes, stored: str) -> bool:
    """Whether `password` matches the htpasswd hash `stored` (blocking: may take 250 ms)."""
    fmt = hash_format(stored)
    if fmt is HashFormat.SHA:
        digest = base64.b64encode(hashlib.sha1(password).digest())
        return hmac.compare_digest(digest, stored[5:].encode("ascii"))
    if fmt is HashFormat.BCRYPT:
        bcrypt = need("bcrypt", "bcrypt")
        try:
            return bool(bcrypt.checkpw(password[:_BCRYPT_MAX], stored.encode("ascii")))
        except ValueError:  # a NUL in the password, or a hash bcrypt cannot read
            return False
    if fmt is HashFormat.APR1:
        return bool(need("passlib.hash", "libpass").apr_md5_crypt.verify(password, stored))
    return False


def dummy_hash(like: str) -> str:
    """A hash of a random password in the format and cost of `like` (for unknown users)."""
    fmt = hash_format(like)
    secret = secrets.token_hex(16).encode()
    if fmt is HashFormat.BCRYPT:
        bcrypt = need("bcrypt", "bcrypt")
        cost = int(like[4:6])
        return str(bcrypt.hashpw(secret, bcrypt.gensalt(rounds=cost)).decode("ascii"))
    if fmt is HashFormat.APR1:
        return str(need("passlib.hash", "libpass").apr_md5_crypt.hash(secret))
    return "{SHA}" + base64.b64encode(hashlib.sha1(secret).digest()).decode("ascii")


def _cost(stored: str) -> int:
    """Rough relative cost, to pick the dummy that takes as long as the slowest user."""
    fmt = hash_format(stored)
    if fmt is HashFormat.BCRYPT:
        return 1000 + int(stored[4:6])
    return 10 if fmt is HashFormat.APR1 else 0


def parse_basic(value: bytes) -> tuple[bytes, str, bytes] | None:
    """``Basic <base64(user:password)>`` -> (the base64 credential, user, password);
    None when the header is not a well-formed Basic credential (RFC 7617)."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    token = token.strip()
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        name = user.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return token, name, password


class VerifiedCache:
    """Credentials verified lately: HMAC(key, credential) -> (user, expiry), bounded LRU.

    Only successes are kept. The key is random per pipeline, so the table holds nothing a
    reader could test passwords against; a configuration change builds a new pipeline and so
    a new, empty cache (a removed user or a changed hash takes effect at once).
    """

    __slots__ = ("_key", "_entries", "size", "ttl")

    def __init__(self, size: int = CACHE_SIZE, ttl: float = CACHE_TTL) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self.size = size
        self.ttl = ttl

    def _digest(self, credential: bytes) -> bytes:
        return hmac.new(self._key, credential, hashlib.sha256).digest()

    def get(self, credential: bytes, now: float) -> str | None:
        digest = self._digest(credential)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry[0]

    def put(self, credential: bytes, user: str, now: float) -> None:
        digest = self._digest(credential)
        self._entries[digest] = (user, now + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<VerifiedCache {len(self._entries)}/{self.size} ttl={self.ttl:g}s>"


class Busy(Exception):
    """Too many password checks are waiting; the request should be refused (503)."""


class PasswordChecker:
    """The `users` of one `auth` entry, checked off the event loop."""

    def __init__(self, users: Mapping[str, str], *, max_pending: int = MAX_PENDING) -> None:
        self.users = dict(users)
        self.cache = VerifiedCache()
        self.max_pending = max_pending
        self.pending = 0
        self.checks = 0
        slowest = max(self.users.values(), key=_cost) if self.users else "{SHA}"
        self._like = slowest
        self._dummy: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pyserve-auth")

    async def startup(self) -> None:
        self._dummy = await asyncio.get_running_loop().run_in_executor(
            self._pool, dummy_hash, self._like)

    def shutdown(self) -> None:
        # Queued checks still run: a request of the old pipeline (a reload happened while it
        # waited) gets its answer rather than a cancelled future.
        self._pool.shutdown(wait=False)

    def remembered(self, credential: bytes) -> str | None:
        """The user of a credential verified lately, without checking it again."""
        return self.cache.get(credential, time.monotonic())

    async def check(self, credential: bytes, user: str, password: bytes) -> bool:
        """Verify `user`/`password` (an unknown user costs a check too); Busy when full."""
        if self.pending >= self.max_pending:
            raise Busy
        stored = self.users.get(user)
        known = stored is not None
        target = stored if stored is not None else (self._dummy or self._like)
        self.pending += 1
        self.checks += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._pool, verify_password, password, target)
        finally:
            self.pending -= 1
        if ok and known:
            self.cache.put(credential, user, time.monotonic())
            return True
        return False

    def __repr__(self) -> str:
        return (f"<PasswordChecker users={len(self.users)} pending={self.pending} "
                f"{self.cache!r}>")
