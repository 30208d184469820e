"""Typed shape of the project file, with every key and default of the contract.

Each dataclass is one TOML table. `gateway.config.loader.validate_text` turns the parsed
document into these objects, checking names and types from the annotations, so adding a key
here is all it takes for `check` to accept and convert it. A dataclass may define
``validate()`` returning ``(key, message)`` pairs for rules the annotations cannot express; an
extension's options may also define ``validate_in(project)`` for rules that need the whole
project (files relative to the project folder, names of apps).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from gateway.routing.actions import ReturnAction
from gateway.routing.locations import compile_regex, parse_pattern


class BackendName(StrEnum):
    AUTO = "auto"
    BUILTIN = "builtin"  # the gateway's own HTTP/1.1 front; it serves the gateway only
    GRANIAN = "granian"
    UVICORN = "uvicorn"
    HYPERCORN = "hypercorn"


class LoopName(StrEnum):
    AUTO = "auto"
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    backend: BackendName = BackendName.AUTO
    event_loop: LoopName = LoopName.AUTO
    http: Literal["auto", "1", "2"] = "auto"
    backlog: int = 1024
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 5
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    max_concurrent_connections: int | None = None
    #: The largest request body taken (bytes; 413 beyond it), as nginx's client_max_body_size;
    #: None: no limit (bodies stream through). Honoured by the built-in front.
    max_body_size: int | None = None

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if self.max_body_size is not None and self.max_body_size < 0:
            errors.append(("max_body_size", "must be 0 or more"))
        if not 0 <= self.port <= 65535:
            errors.append(("port", f"must be between 0 and 65535, not {self.port}"))
        if self.backlog < 1:
            errors.append(("backlog", "must be at least 1"))
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            errors.append(("ssl_certfile", "ssl_certfile and ssl_keyfile go together"))
        return errors


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    request_log_size: int = 10000

    def validate(self) -> list[tuple[str, str]]:
        if self.request_log_size < 1:
            return [("request_log_size", "must be at least 1")]
        return []


# --- routing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LocationAction:
    """What one `regex_locations` entry does."""

    # `return` is a Python keyword, so the TOML key is mapped onto `return_`.
    return_: str | None = None
    content_type: str | None = None
    proxy_pass: str | None = None
    root: str | None = None
    index_file: str = "index.html"
    spa_fallback: bool = False
    exclude_patterns: list[str] = field(default_factory=list)
    cache_control: str | None = None
    headers: list[str] = field(default_factory=list)
    proxy_timeout: float = 60.0

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        actions = [k for k in ("return_", "proxy_pass", "root") if getattr(self, k) is not None]
        if len(actions) > 1:
            names = ", ".join(a.rstrip("_") for a in actions)
            errors.append(("", f"takes one of return, proxy_pass, root, not {names}"))
        if self.return_ is not None and not re.fullmatch(r"\d{3}(\s.*)?", self.return_):
            errors.append(("return", f"must be 'CODE [text]', not {self.return_!r}"))
        elif self.return_ is not None:
            try:
                ReturnAction(self.return_, self.content_type)
            except ValueError as exc:
                errors.append(("return", str(exc)))
        if self.proxy_pass is not None and not re.match(r"https?://[^/]+", self.proxy_pass):
            errors.append(("proxy_pass", f"must be an http:// URL, not {self.proxy_pass!r}"))
        for h in self.headers:
            if ":" not in h:
                errors.append(("headers", f"{h!r} is not 'Name: value'"))
        return errors


@dataclass(frozen=True)
class RoutingOptions:
    regex_locations: dict[str, LocationAction] = field(default_factory=dict)

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        for pattern in self.regex_locations:
            where = f"regex_locations.{pattern!r}"
            try:
                kind, text = parse_pattern(pattern)
            except ValueError:
                errors.append((where, "a location starts with /, =/, ^~/, ~ or ~*"))
                continue
            if kind.is_regex:
                try:
                    compile_regex(kind, text)
                except re.error as exc:
                    errors.append((where, f"bad regex: {exc}"))
        return errors


# --- security, caching, monitoring --------------------------------------------------------

@dataclass(frozen=True)
class SecurityOptions:
    security_headers: dict[str, str] | None = None
    allowed_ips: list[str] | None = None
    blocked_ips: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)

    def validate(self) -> list[tuple[str, str]]:
        return _check_networks(self, ("allowed_ips", "blocked_ips", "trusted_proxies"))


@dataclass(frozen=True)
class CachingOptions:
    cache_patterns: list[str] = field(default_factory=lambda: ["*"])
    cache_ttl: float = 3600
    max_entries: int = 10000
    max_bytes: int = 64 * 1024 * 1024
    max_entry_bytes: int = 1024 * 1024
    # How long a request waits for an identical in-flight miss before asking the app itself.
    single_flight_timeout: float = 10.0


@dataclass(frozen=True)
class MonitoringOptions:
    enable_metrics: bool = True
    # Distinct (route, app, status class) series kept; later ones are counted under "other".
    max_routes: int = 200


# --- in-process mounts -------------------------------------------------------------------

@dataclass(frozen=True)
class MountConfig:
    path: str
    app_path: str
    #: None: the loaded object is inspected (ASGI 3, ASGI 2 or WSGI).
    app_type: Literal["asgi", "wsgi"] | None = None
    module_path: str | None = None
    factory: bool = False
    factory_args: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    strip_path: bool = True
    django_settings: str | None = None

    def validate(self) -> list[tuple[str, str]]:
        errors = _check_mount_path(self.path)
        if ":" not in self.app_path:
            errors.append(("app_path", f"must be 'module:attribute', not {self.app_path!r}"))
        return errors


@dataclass(frozen=True)
class AsgiOptions:
    mounts: list[MountConfig] = field(default_factory=list)


# --- process orchestration ---------------------------------------------------------------

@dataclass(frozen=True)
class OrchestrationLogging:
    httpx_level: Literal["debug", "info", "warning", "error"] = "warning"
    proxy_logs: bool = True
    health_check_logs: bool = False


@dataclass(frozen=True)
class AppConfig:
    """One app. Its health/restart/timeout keys are None to inherit the global value."""

    name: str
    path: str
    app_path: str | None = None
    #: None: the loaded object is inspected (ASGI 3, ASGI 2 or WSGI).
    app_type: Literal["asgi", "wsgi"] | None = None
    workers: int = 1
    port: int | None = None
    factory: bool = False
    factory_args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    module_path: str | None = None
    #: None (the key is absent): "/health" is probed and any answer below 500 counts.
    health_check_path: str | None = None
    strip_path: bool = True
    backend: BackendName | None = None
    command: list[str] | None = None
    depends_on: list[str] = field(default_factory=list)
    reload: bool = False
    watch: list[str] = field(default_factory=list)
    health_check_enabled: bool | None = None
    health_check_interval: float | None = None
    health_check_timeout: float | None = None
    health_check_retries: int | None = None
    max_restart_count: int | None = None
    restart_delay: float | None = None
    shutdown_timeout: float | None = None
    proxy_timeout: float | None = None
    hold_requests: float | None = None

    @property
    def prefix(self) -> str:
        """The prefix the app is told it lives under (root_path, SCRIPT_NAME,
        X-Forwarded-Prefix): its `path` when `strip_path` removes that from the requests
        it gets, else "" (it sees the whole path)."""
        return self.path.rstrip("/") if self.strip_path else ""

    def validate(self) -> list[tuple[str, str]]:
        errors = _check_mount_path(self.path)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            errors.append(("name", f"{self.name!r}: use letters, digits, '_', '-', '.'"))
        if self.app_path is None and not self.command:
            errors.append(("", "'app_path' is required (or give 'command')"))
        if self.app_path is not None and ":" not in self.app_path:
            errors.append(("app_path", f"must be 'module:attribute', not {self.app_path!r}"))
        if self.workers < 1:
            errors.append(("workers", "must be at least 1"))
        if self.port is not None and not 1 <= self.port <= 65535:
            errors.append(("port", f"must be between 1 and 65535, not {self.port}"))
        if self.health_check_path is not None and not self.health_check_path.startswith("/"):
            errors.append(("health_check_path", "must start with /"))
        if self.name in self.depends_on:
            errors.append(("depends_on", "an app cannot depend on itself"))
        if self.backend == BackendName.BUILTIN:
            errors.append(("backend", "'builtin' serves the gateway only; an app runs on "
                                      "granian, uvicorn or hypercorn"))
        return errors


@dataclass(frozen=True)
class OrchestrationOptions:
    port_range: tuple[int, int] = (9000, 9999)
    health_check_enabled: bool = True
    health_check_interval: float = 10.0
    health_check_timeout: float = 5.0
    health_check_retries: int = 3
    proxy_timeout: float = 60.0
    max_restart_count: int = 5
    restart_delay: float = 1.0
    shutdown_timeout: float = 30.0
    hold_requests: float = 5.0
    logging: OrchestrationLogging = field(default_factory=OrchestrationLogging)
    apps: list[AppConfig] = field(default_factory=list)

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        lo, hi = self.port_range
        if not 1 <= lo <= hi <= 65535:
            errors.append(("port_range", f"must be [low, high] within 1..65535, not [{lo}, {hi}]"))
        names = [a.name for a in self.apps]
        for i, app in enumerate(self.apps):
            if names.count(app.name) > 1 and names.index(app.name) != i:
                errors.append((f"apps[{i}].name", f"duplicate app name {app.name!r}"))
            for dep in app.depends_on:
                if dep not in names:
                    errors.append((f"apps[{i}].depends_on", f"unknown app {dep!r}"))
        if not errors:
            cycle = _find_cycle({a.name: list(a.depends_on) for a in self.apps})
            if cycle:
                i = names.index(cycle[0])
                errors.append((f"apps[{i}].depends_on", "dependency cycle: " + " -> ".join(cycle)))
        return errors

    def effective(self, app: AppConfig, key: str) -> Any:
        """An app's value for an overridable key: its own, else the global one."""
        value = getattr(app, key)
        return getattr(self, key) if value is None else value


# --- middleware-like extensions ----------------------------------------------------------

@dataclass(frozen=True)
class CorsOptions:
    allow_origins: list[str] = field(default_factory=lambda: ["*"])
    allow_methods: list[str] = field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
    allow_headers: list[str] = field(default_factory=lambda: ["*"])
    expose_headers: list[str] = field(default_factory=list)
    allow_credentials: bool = False
    max_age: int = 600


@dataclass(frozen=True)
class RateLimitOptions:
    requests_per_minute: int = 60
    burst_size: int = 10
    max_clients: int = 100000
    # Like security's: only these peers may name the client in X-Forwarded-For.
    trusted_proxies: list[str] = field(default_factory=list)

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if self.requests_per_minute < 1:
            errors.append(("requests_per_minute", "must be at least 1"))
        if self.burst_size < 1:
            errors.append(("burst_size", "must be at least 1"))
        return errors + _check_networks(self, ("trusted_proxies",))


@dataclass(frozen=True)
class CompressionOptions:
    minimum_size: int = 1024
    compression_level: int = 6

    def validate(self) -> list[tuple[str, str]]:
        if not 1 <= self.compression_level <= 9:
            return [("compression_level", "must be between 1 and 9")]
        return []


# --- authentication ------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers an auth entry may not set on a request: the framing and routing of the request
#: itself, and the ones the gateway sets. (A forward auth service may replace Authorization,
#: as oauth2-proxy does behind Traefik; a JWT claim may not.)
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
    "keep-alive", "x-request-id", "traceparent", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "x-forwarded-prefix",
})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
#: Which keys belong to which `method` (the shared ones belong to all).
_AUTH_METHOD_KEYS = {
    "basic": ("users", "max_failures", "failures_per_minute", "trusted_proxies"),
    "jwt": ("secret_key", "public_key_file", "jwks_file", "issuer", "audience", "leeway",
            "claims_to_headers"),
    "forward": ("url", "response_headers", "timeout"),
}


@dataclass(frozen=True)
class AuthOptions:
    """One `auth` entry (several may be listed: a request must pass them all)."""

    method: Literal["basic", "jwt", "forward"]
    # Which paths it covers: all unless `paths` is given; `exclude_paths` are left open.
    paths: list[str] = field(default_factory=list)
    exclude_paths: list[str] = field(default_factory=list)
    realm: str = "pyserve-tui"
    # basic
    users: dict[str, str] = field(default_factory=dict)
    # The brake on guessing: wrong passwords a client may send in a row, and how many more a
    # minute after that (a token bucket per client address, as rate_limit's).
    max_failures: int = 10
    failures_per_minute: int = 6
    trusted_proxies: list[str] = field(default_factory=list)
    # jwt
    secret_key: str | None = None
    public_key_file: str | None = None
    jwks_file: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    claims_to_headers: dict[str, str] = field(default_factory=dict)
    # forward
    url: str | None = None
    response_headers: list[str] = field(default_factory=list)
    timeout: float = 10.0

    def validate(self) -> list[tuple[str, str]]:
        errors = self._misplaced_keys()
        for key in ("paths", "exclude_paths"):
            for p in getattr(self, key):
                if not p.startswith(("/", "*")):
                    errors.append((key, f"{p!r}: a path pattern starts with / or *"))
        if not re.fullmatch(r"[\x20-\x7e]*", self.realm) or '"' in self.realm \
                or "\\" in self.realm:
            errors.append(("realm", "printable ASCII without quotes or backslashes"))
        check = {"basic": self._check_basic, "jwt": self._check_jwt,
                 "forward": self._check_forward}[self.method]
        return errors + check()

    def _misplaced_keys(self) -> list[tuple[str, str]]:
        errors = []
        defaults = AuthOptions(method=self.method)
        for method, keys in _AUTH_METHOD_KEYS.items():
            if method == self.method:
                continue
            for key in keys:
                if getattr(self, key) != getattr(defaults, key):
                    errors.append((key, f"is a key of method {method!r}, "
                                        f"not of {self.method!r}"))
        return errors

    def _check_basic(self) -> list[tuple[str, str]]:
        from gateway.auth.passwords import check_hash

        errors = []
        if not self.users:
            errors.append(("users", "method 'basic' needs users (name = htpasswd hash)"))
        for name, stored in self.users.items():
            if not name or ":" in name:
                errors.append((f"users.{name!r}", "a user name cannot be empty or hold ':'"))
            problem = check_hash(stored)
            if problem is not None:
                errors.append((f"users.{name!r}", problem))
        if self.max_failures < 1:
            errors.append(("max_failures", "must be at least 1"))
        if self.failures_per_minute < 1:
            errors.append(("failures_per_minute", "must be at least 1"))
        return errors + _check_networks(self, ("trusted_proxies",))

    def _check_jwt(self) -> list[tuple[str, str]]:
        from gateway.auth import MissingLibrary, need
        from gateway.auth.tokens import MIN_SECRET_BYTES

        given = [k for k in ("secret_key", "public_key_file", "jwks_file")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            return [("", "method 'jwt' takes one of secret_key, public_key_file, jwks_file"
                         + (f", not {', '.join(given)}" if given else ""))]
        try:
            need("jwt", "PyJWT")
            if self.secret_key is None:
                need("cryptography", "cryptography")
        except MissingLibrary as exc:
            return [(given[0], f"method 'jwt' {exc}")]
        errors = []
        if self.secret_key is not None and len(self.secret_key.encode()) < MIN_SECRET_BYTES:
            errors.append(("secret_key", f"must be at least {MIN_SECRET_BYTES} bytes for "
                                         "HS256 (RFC 7518 3.2); make one with: "
                                         "openssl rand -base64 32"))
        if self.leeway < 0:
            errors.append(("leeway", "must be 0 or more"))
        for claim, header in self.claims_to_headers.items():
            errors += _check_request_header(f"claims_to_headers.{claim!r}", header,
                                            _RESERVED_HEADERS | _CREDENTIAL_HEADERS)
        return errors

    def _check_forward(self) -> list[tuple[str, str]]:
        from gateway.auth.forward_url import parse_forward_url

        if self.url is None:
            return [("", "method 'forward' needs url (http://host:port/path or app:NAME/path)")]
        errors = []
        try:
            parse_forward_url(self.url)
        except ValueError as exc:
            errors.append(("url", str(exc)))
        if self.timeout <= 0:
            errors.append(("timeout", "must be more than 0"))
        for header in self.response_headers:
            errors += _check_request_header("response_headers", header, _RESERVED_HEADERS)
        return errors

    def validate_in(self, project: ProjectConfig) -> list[tuple[str, str]]:
        """Rules that need the project: key files (relative to its folder), app names."""
        if self.method == "forward" and self.url and self.url.startswith("app:"):
            from gateway.auth.forward_url import parse_forward_url

            app = parse_forward_url(self.url).app
            if app not in {a.name for a in project.apps}:
                return [("url", f"no app named {app!r} in process_orchestration")]
        if self.method == "jwt":
            from gateway.auth import MissingLibrary

            key = "public_key_file" if self.public_key_file else "jwks_file"
            try:
                self.key_ring(project)
            except (OSError, ValueError, MissingLibrary) as exc:
                return [(key, _key_problem(exc))]
        return []

    def key_ring(self, project: ProjectConfig) -> Any:
        """The JWT keys (a `gateway.auth.tokens.KeyRing`), read from the project's files."""
        from gateway.auth.tokens import KeyRing

        return KeyRing.load(
            secret_key=self.secret_key,
            public_key_file=project.resolve(self.public_key_file)
            if self.public_key_file else None,
            jwks_file=project.resolve(self.jwks_file) if self.jwks_file else None)


def _key_problem(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _check_request_header(key: str, header: str,
                          reserved: frozenset[str]) -> list[tuple[str, str]]:
    if not _HEADER_NAME.fullmatch(header):
        return [(key, f"{header!r} is not a header name")]
    if header.lower() in reserved:
        return [(key, f"{header!r} cannot be set by an auth entry")]
    return []


#: Extension types that may be listed more than once.
REPEATABLE = frozenset({"auth"})


BUILTIN_OPTIONS: dict[str, type] = {
    "routing": RoutingOptions,
    "security": SecurityOptions,
    "caching": CachingOptions,
    "monitoring": MonitoringOptions,
    "asgi": AsgiOptions,
    "process_orchestration": OrchestrationOptions,
    "cors": CorsOptions,
    "rate_limit": RateLimitOptions,
    "compression": CompressionOptions,
    "auth": AuthOptions,
}


@dataclass(frozen=True)
class ExtensionConfig:
    type: str
    options: Any
    index: int
    line: int = 0


@dataclass(frozen=True)
class ProjectConfig:
    path: Path
    server: ServerConfig
    logging: LoggingConfig
    extensions: tuple[ExtensionConfig, ...]
    #: The text it was validated from: what the engine compares later edits of the file with.
    text: str = field(default="", compare=False, repr=False)

    @property
    def root(self) -> Path:
        """The folder relative paths in the file resolve against."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def extension(self, type_: str) -> ExtensionConfig | None:
        return next((e for e in self.extensions if e.type == type_), None)

    @property
    def orchestration(self) -> OrchestrationOptions | None:
        ext = self.extension("process_orchestration")
        return ext.options if ext else None

    @property
    def apps(self) -> list[AppConfig]:
        orch = self.orchestration
        return list(orch.apps) if orch else []

    @property
    def trusted_proxies(self) -> list[str]:
        """Peers whose X-Forwarded-* headers are believed: `security` and `rate_limit`
        `trusted_proxies` together."""
        found: dict[str, None] = {}
        for type_ in ("security", "rate_limit"):
            ext = self.extension(type_)
            if ext is not None:
                found.update(dict.fromkeys(ext.options.trusted_proxies))
        return list(found)


def _check_networks(options: Any, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    errors = []
    for key in keys:
        for value in getattr(options, key) or []:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                errors.append((key, f"{value!r} is not an IP address or CIDR block"))
    return errors


def _check_mount_path(path: str) -> list[tuple[str, str]]:
    if not path.startswith("/"):
        return [("path", f"must start with /, not {path!r}")]
    return []


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None
