"""The `auth` extension: Basic (htpasswd hashes), Bearer tokens (JWT) and forward auth.

One entry checks one `method` on the paths it covers (`paths`, default all, minus
`exclude_paths`: see `gateway.auth.paths`); several entries may be listed and a request must
pass every one whose paths cover it. It also guards the gateway's own ``/metrics``
(``guards_builtins``); ``/health`` stays open, as load balancers and orchestrators expect.

Answers, as nginx, Traefik and Caddy users know them:

- no or wrong credentials: ``401`` with ``WWW-Authenticate: Basic realm="..."`` or
  ``Bearer realm="..."`` (with ``error="invalid_token"`` and a description when a token was
  given and refused, ``400 invalid_request`` for a malformed header, RFC 6750);
- forward: whatever the auth service answered, as it came;
- Basic only, the brake on guessing: each client address (resolved like `rate_limit`'s,
  honouring `trusted_proxies`) may send `max_failures` wrong passwords in a row, then
  `failures_per_minute` more a minute; beyond that every request carrying credentials gets
  ``429`` with ``Retry-After`` and no password is checked at all (not even a right one, so
  an attacker learns nothing from a locked-out address). This is what nginx users build with
  ``limit_req`` or fail2ban; no gateway delays its 401s instead, which would only hold
  connections open for the attacker.

Headers the entry sets on requests (`claims_to_headers`' names, forward
`response_headers`) are first removed from every request, covered or not, so a client can
never send them itself. WebSocket handshakes are checked like any request and refused before
they are accepted (a real status when the server supports denial responses, else close 1008).

The decision is recorded in the request's notes under the entry's name (``auth``,
``auth#2``...): who (user or token subject), which method, and why a request was refused,
never the secret.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.auth.forward import ForwardAuth
from gateway.auth.passwords import Busy, PasswordChecker, parse_basic
from gateway.auth.paths import PathRules
from gateway.auth.tokens import TokenRejected, TokenVerifier
from gateway.config.schema import AuthOptions, ProjectConfig
from gateway.context import RequestContext, get_context
from gateway.errors import ConfigError
from gateway.extensions._client import ClientResolver
from gateway.extensions._http import header_value, refuse
from gateway.extensions.base import Extension
from gateway.extensions.rate_limit import TokenBuckets
from gateway.routing.actions import header_escape
from gateway.services import Services
from gateway.types import ASGIApp, Headers, Receive, Scope, Send

#: Clients whose failed attempts are remembered (least recently seen forgotten first).
_MAX_CLIENTS = 100000
#: Built-in extensions that answer requests themselves: listed before every `auth` entry,
#: what they answer is never authenticated.
_ANSWERING = ("routing", "caching", "asgi", "process_orchestration")


def order_warnings(project: ProjectConfig) -> list[str]:
    """One line per extension that answers requests before the first `auth` entry sees them
    (`check` prints them, the engine reports them when it starts)."""
    first = next((e.index for e in project.extensions if e.type == "auth"), None)
    if first is None:
        return []
    return [f"{project.path.name}:{e.line}:1: extensions[{e.index}] ({e.type}) comes before "
            f"auth: the requests it answers are not authenticated; list auth first"
            for e in project.extensions if e.index < first and e.type in _ANSWERING]


def _shown(value: object, limit: int = 64) -> str:
    """A client-supplied name as it may appear in a log line: escaped, bounded."""
    return ascii(str(value))[1:-1][:limit]


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_claim_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


class AuthExtension(Extension):
    name = "auth"
    Options = AuthOptions
    guards_builtins = True

    def __init__(self, app: ASGIApp, *, options: AuthOptions, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.method = options.method
        self.rules = PathRules(options.paths, options.exclude_paths)
        self.claims = [(claim, header.strip().lower().encode("latin-1"))
                       for claim, header in options.claims_to_headers.items()]
        self.strip = frozenset({h for _, h in self.claims} | {
            h.strip().lower().encode("latin-1") for h in options.response_headers})
        realm = options.realm
        self.passwords: PasswordChecker | None = None
        self.tokens: TokenVerifier | None = None
        self.forward: ForwardAuth | None = None
        if options.method == "basic":
            self.passwords = PasswordChecker(options.users)
            self.brake = TokenBuckets(options.failures_per_minute, options.max_failures,
                                      _MAX_CLIENTS)
            self.resolver = ClientResolver(options.trusted_proxies)
            self.challenge = f'Basic realm="{realm}", charset="UTF-8"'.encode("latin-1")
        elif options.method == "jwt":
            try:
                keys = options.key_ring(services.project)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load the JWT key: {exc}",
                                  path=str(services.project.path), where="auth") from None
            self.tokens = TokenVerifier(keys, issuer=options.issuer,
                                        audience=options.audience, leeway=options.leeway)
            self.challenge = f'Bearer realm="{realm}"'.encode("latin-1")
        else:
            self.forward = ForwardAuth(options.url or "", options.response_headers,
                                       options.timeout, services)
            self.challenge = b""
        self.allowed = 0
        self.refused = 0
        self.excluded = 0
        self.limited = 0
        self.remembered = 0

    async def startup(self) -> None:
        if self.passwords is not None:
            await self.passwords.startup()

    async def shutdown(self) -> None:
        if self.passwords is not None:
            self.passwords.shutdown()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        return self.guard(scope, receive, send, app=self.app)

    async def guard(self, scope: Scope, receive: Receive, send: Send, *,
                    app: ASGIApp) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await app(scope, receive, send)
            return
        if self.strip:
            strip = self.strip
            scope["headers"] = [h for h in scope["headers"] if h[0] not in strip]
        if not self.rules.covers(scope["path"]):
            self.excluded += 1
            await app(scope, receive, send)
            return
        ctx = get_context(scope)
        if self.passwords is not None:
            passed = await self._basic(scope, send, ctx, self.passwords)
        elif self.tokens is not None:
            passed = await self._jwt(scope, send, ctx, self.tokens)
        else:
            assert self.forward is not None
            passed = await self._forward(scope, send, ctx, self.forward)
        if passed:
            self.allowed += 1
            await app(scope, receive, send)
        else:
            self.refused += 1

    def _note(self, ctx: RequestContext | None, text: str) -> None:
        if ctx is not None:
            ctx.notes[self.name] = text

    async def _refuse(self, scope: Scope, send: Send, ctx: RequestContext | None,
                      status: int, why: str, challenge: bytes | None = None, *,
                      retry_after: float | None = None) -> bool:
        self._note(ctx, f"refused ({self.method}): {why}")
        headers: Headers = [(b"www-authenticate", challenge)] if challenge else []
        detail = {401: "authentication required", 400: "malformed credentials"}.get(status, why)
        await refuse(scope, send, status, detail, retry_after=retry_after, headers=headers)
        return False

    # --- basic ------------------------------------------------------------------------------

    async def _basic(self, scope: Scope, send: Send, ctx: RequestContext | None,
                     passwords: PasswordChecker) -> bool:
        value = header_value(scope["headers"], b"authorization")
        parsed = parse_basic(value) if value is not None else None
        if parsed is None:
            why = "no credentials" if value is None else "not Basic credentials"
            return await self._refuse(scope, send, ctx, 401, why, self.challenge)
        credential, user, password = parsed
        client = self.resolver.resolve(scope).text
        now = time.monotonic()
        known = passwords.remembered(credential)
        # A locked-out address gets no answer about any password, remembered ones included:
        # otherwise it could keep testing guesses against the credentials of active users.
        wait = self.brake.wait(client, now) if known is not None \
            else self.brake.take(client, now)
        if wait:
            self.limited += 1
            return await self._refuse(
                scope, send, ctx, 429,
                f"too many failed attempts from {client or 'unknown'}, retry later",
                retry_after=wait)
        if known is not None:
            self.remembered += 1
            self._note(ctx, f"basic: user {_shown(known)}")
            return True
        try:
            ok = await passwords.check(credential, user, password)
        except Busy:
            self.brake.give_back(client)
            return await self._refuse(scope, send, ctx, 503, "too many password checks "
                                      "waiting, retry later", retry_after=1.0)
        if ok:
            self.brake.give_back(client)
            self._note(ctx, f"basic: user {_shown(user)}")
            return True
        why = "wrong password for user" if user in passwords.users else "unknown user"
        return await self._refuse(scope, send, ctx, 401, f"{why} {_shown(user)!r}",
                                  self.challenge)

    # --- jwt --------------------------------------------------------------------------------

    async def _jwt(self, scope: Scope, send: Send, ctx: RequestContext | None,
                   tokens: TokenVerifier) -> bool:
        value = header_value(scope["headers"], b"authorization")
        if value is None:
            return await self._refuse(scope, send, ctx, 401, "no credentials", self.challenge)
        scheme, _, raw = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return await self._refuse(scope, send, ctx, 401, "not a Bearer token",
                                      self.challenge)
        raw = raw.strip()
        try:
            token = raw.decode("ascii")
        except UnicodeDecodeError:
            token = ""
        if not token or " " in token:
            return await self._refuse(scope, send, ctx, 400, "malformed Bearer credentials",
                                      self.challenge + b', error="invalid_request"')
        try:
            claims = tokens.verify(token)
        except TokenRejected as exc:
            challenge = (self.challenge + b', error="invalid_token", error_description="'
                         + str(exc).encode("latin-1") + b'"')
            return await self._refuse(scope, send, ctx, 401, f"token refused: {exc}",
                                      challenge)
        if self.claims:
            headers = scope["headers"]  # a list of our own: `strip` made it
            for claim, header in self.claims:
                if claim in claims and claims[claim] is not None:
                    text = header_escape(_claim_text(claims[claim]))
                    headers.append((header, text.encode("latin-1")))
        self._note(ctx, f"jwt: sub {_shown(claims.get('sub', '-'))}")
        return True

    # --- forward ----------------------------------------------------------------------------

    async def _forward(self, scope: Scope, send: Send, ctx: RequestContext | None,
                       forward: ForwardAuth) -> bool:
        answer = await forward.ask(scope, send)
        said = f"{answer.status} from {forward.url.label} in {answer.elapsed_ms:.1f} ms"
        if not answer.allowed:
            self._note(ctx, f"refused (forward): {said}")
            return False
        if answer.copy:
            scope["headers"] = [*scope["headers"], *answer.copy]
        self._note(ctx, f"forward: {said}")
        return True

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "allowed": self.allowed,
                               "refused": self.refused, "excluded": self.excluded}
        if self.passwords is not None:
            out.update(limited=self.limited, remembered=self.remembered,
                       password_checks=self.passwords.checks)
        return out

    def __repr__(self) -> str:
        checker = self.passwords or self.tokens or self.forward
        return (f"<AuthExtension {self.name!r} {self.method} {self.rules!r} {checker!r} "
                f"allowed={self.allowed} refused={self.refused}>")
