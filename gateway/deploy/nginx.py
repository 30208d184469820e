"""The gateway as an ``nginx.conf``.

Our routing is nginx's location model, so most of the pipeline maps 1:1:

* ``regex_locations`` become locations with the same modifiers, in the same order (regex
  order is significant); ``__default__`` becomes ``location /``;
* apps (and mounts) become ``upstream`` blocks and ``location = /p`` + ``location ^~ /p/``
  (the gateway gives them the path before any routing location when they come first in the
  pipeline, and ``^~`` is how nginx skips the regexes); ``strip_path`` is
  ``X-Forwarded-Prefix`` plus the prefix stripped or kept as the app's server expects
  (`gateway.deploy.commands.proxy_strips`);
* static roots are ``root`` + ``index``, the SPA fallback an ``error_page 404`` into a named
  location serving the index file (so directories still redirect, as in the gateway);
* response headers are ``add_header ... always`` repeated in every location, because nginx
  drops inherited ``add_header`` on any level that adds its own; security headers go
  through a ``map`` on the upstream's header so an app's own value wins, as in the gateway;
* allow/deny, ``limit_req``, CORS with ``map``s, gzip, ``proxy_cache``, ``auth_basic`` and
  ``auth_request``; WebSocket upgrades and unbuffered proxying (Server-Sent Events) on every
  app location; ``X-Request-ID`` and ``traceparent`` validated, passed on and returned.

What cannot be said in nginx is written to the `Report`. Values that reach nginx strings are
quoted, and a ``$`` the user wrote is emitted as ``${pyserve_dollar}`` so it stays a dollar.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import (
    CachingOptions,
    CompressionOptions,
    CorsOptions,
    LocationAction,
    ProjectConfig,
    RateLimitOptions,
    SecurityOptions,
)
from gateway.deploy.commands import proxy_strips
from gateway.deploy.plan import DeployPlan, Unit
from gateway.deploy.report import Report
from gateway.extensions.compression import _SKIP_PREFIXES, _SKIP_TYPES, _TEXTUAL_IMAGES
from gateway.extensions.security import DEFAULT_HEADERS
from gateway.routing.locations import LocationKind, parse_pattern
from gateway.routing.mediatypes import _TEXTUAL, _WEB_TYPES
from gateway.routing.upstream import parse_proxy_url

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Types worth compressing: nginx needs a list where the gateway skips known-compressed ones.
_GZIP_TYPES = sorted(({t for t in _WEB_TYPES.values() if t.startswith("text/")} | _TEXTUAL
                      | {"application/wasm"}) - {"text/html"})
#: Types nginx's charset module labels utf-8 on static files, as the gateway does.
_CHARSET_TYPES = sorted(({t for t in _WEB_TYPES.values() if t.startswith("text/")} | _TEXTUAL)
                        - {"text/html"})
#: A request path (raw, as sent) that still holds a backslash or a control character once
#: normalised (slashes and dot segments are gone from $uri, as from the gateway's path).
_NONCANONICAL = r"~^[^?]*(\\|%(5[cC]|[01][0-9a-fA-F]|7[fF]))"
_HIDDEN = r"/\.(?!well-known(/|$))"
#: Errors nginx answers with the gateway's kind of page (not 401, 405, 416: their own
#: headers, WWW-Authenticate, Allow, Content-Range, would be lost on the way).
#: Internal status a refused CORS preflight takes on its way to its 403 page.
CORS_REFUSED = 418
ERROR_CODES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Content Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class NginxLayout:
    """Where things are for one target: the listen address, each unit's upstream address,
    static roots and the folders nginx writes to."""

    listen: str
    upstream: Callable[[Unit], str]
    static_root: Callable[[str], str]
    cache_dir: str
    auth_dir: str


@dataclass
class NginxConfig:
    text: str
    #: Extra files nginx needs beside nginx.conf (htpasswd files), name -> content.
    files: dict[str, str] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${pyserve_dollar}")


def q(value: str) -> str:
    """A double-quoted nginx string whose ``$`` stay literal."""
    return f'"{_escape(value)}"'


def q_template(value: str, groups: Iterable[str] = ()) -> str:
    """Like `q`, with ``{name}`` placeholders of the location regex's named groups turned
    into nginx's named captures; any other ``{name}`` stays as written, as in the gateway."""
    names = set(groups)
    out = []
    last = 0
    for m in _PLACEHOLDER.finditer(value):
        out.append(_escape(value[last:m.start()]))
        out.append("${" + m[1] + "}" if m[1] in names else _escape(m[0]))
        last = m.end()
    out.append(_escape(value[last:]))
    return '"' + "".join(out) + '"'


def q_regex(pattern: str) -> str:
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def glob_regex(glob: str) -> str:
    """An unanchored PCRE for a gateway glob (``*`` crosses ``/``, as fnmatch)."""
    translated = fnmatch.translate(glob)  # '(?s:...)\\Z'
    return translated[: -len(r"\Z")]


def auth_path_regex(pattern: str) -> str:
    """An anchored PCRE for an `auth` path pattern: a glob matches the whole path, a plain
    path itself and everything below it on a segment boundary (as `gateway.auth.paths`)."""
    if set(pattern) & set("*?["):
        return "^" + glob_regex(pattern) + "$"
    base = pattern.rstrip("/")
    return "^/" if not base else "^" + re.escape(base) + "(/|$)"


def _opt(options: Any, key: str, default: Any = None) -> Any:
    if isinstance(options, dict):
        return options.get(key, default)
    return getattr(options, key, default)


@dataclass
class _Loc:
    """One location block: its match line and body, in output order."""

    match: str
    body: list[str]


class NginxBuilder:
    """Builds the configuration for one project and layout (used once)."""

    def __init__(self, project: ProjectConfig, plan: DeployPlan, layout: NginxLayout,
                 report: Report) -> None:
        self.project = project
        self.plan = plan
        self.layout = layout
        self.report = report
        self.http: list[str] = []
        self.maps: list[str] = []
        self.server: list[str] = []
        self.locations: list[_Loc] = []
        self.named: list[_Loc] = []
        self.files: dict[str, str] = {}
        exts = project.extensions
        self.types = [e.type for e in exts]
        self.security: SecurityOptions | None = self._ext("security")
        self.cors: CorsOptions | None = self._ext("cors")
        self.rate: RateLimitOptions | None = self._ext("rate_limit")
        self.gzip: CompressionOptions | None = self._ext("compression")
        self.cache: CachingOptions | None = self._ext("caching")
        self.auths = [e for e in exts if e.type == "auth"]
        self._spa = 0
        self._returns = 0
        self._sec_headers: list[tuple[str, str]] = []
        self._refusal_headers = False
        self._auth_lines: list[str] = []
        self._auth_header_sets: list[str] = []
        self._groups: list[str] = []
        self._bearer = False
        self._cors_fixed = self._cors_any_method = self._cors_any_header = False

    def _ext(self, type_: str) -> Any:
        ext = self.project.extension(type_)
        return ext.options if ext else None

    # --- whole file ------------------------------------------------------------------------

    def build(self) -> NginxConfig:
        self._tls()
        self._common_maps()
        self._security_maps()
        self._cors_maps()
        self._rate_limit()
        self._gzip()
        self._caching()
        self._auth()
        self._upstreams()
        self._builtins()
        self._locations()
        self._unmapped_extensions()
        self._error_locations()
        self.server += self.error_pages()
        self.locations += self.named
        return NginxConfig(self._render(), self.files)

    def _render(self) -> str:
        out = [
            f"# nginx.conf for {self.project.path.name}, generated by `pyserve-tui export "
            f"{self.report.target}`.",
            "# Regenerate it rather than editing it; REPORT.md lists what differs from the "
            "workbench.",
            "worker_processes auto;",
            "",
            "events {",
            "    worker_connections 1024;",
            "}",
            "",
            "http {",
        ]
        out += ["    " + line for line in self._types_block()]
        out += [
            "    default_type application/octet-stream;",
            "    sendfile on;",
            "    server_tokens off;",
            "    absolute_redirect off;",
            "    client_max_body_size 0;",
            "",
        ]
        out += ["    " + line if line else "" for line in self.maps + self.http]
        out += ["", "    server {", f"        listen {self.layout.listen};",
                "        server_name _;"]
        out += ["        " + line for line in self.server]
        if self._refusal_headers:
            out += ["        # Headers of the server-level 403 (locations repeat their own)."]
            out += ["        " + line for line in self._pipeline_headers()
                    if "Access-Control" not in line and "Vary" not in line
                    and "Retry-After" not in line]
        for loc in self.locations:
            out.append("")
            out.append(f"        location {loc.match} {{")
            out += [self._indent(line, 12) for line in loc.body]
            out.append("        }")
        out += ["    }", "}", ""]
        return "\n".join(out)

    @staticmethod
    def _indent(line: str, n: int) -> str:
        return " " * n + line if line else ""

    @staticmethod
    def _types_block() -> list[str]:
        # The gateway's own table, so a file gets the same Content-Type from both.
        by_type: dict[str, list[str]] = {}
        for ext, ctype in sorted(_WEB_TYPES.items()):
            by_type.setdefault(ctype, []).append(ext[1:])
        lines = ["types {"]
        lines += [f"    {q(t)} {' '.join(exts)};" for t, exts in sorted(by_type.items())]
        return lines + ["}"]

    # --- maps and http-level settings ---------------------------------------------------------

    def _tls(self) -> None:
        if self.project.server.ssl_certfile:
            hsts = (" and the Strict-Transport-Security header the gateway adds on https"
                    if self.security is not None and self.security.security_headers is None
                    else "")
            self.report.add("TLS (ssl_certfile)", "this nginx listens on plain http: the "
                            f"certificate{hsts} are not carried over; add `listen ... ssl` "
                            "with ssl_certificate/ssl_certificate_key where TLS ends")

    def _common_maps(self) -> None:
        self.maps += [
            "# A literal dollar sign for strings that contain one.",
            'geo $pyserve_dollar { default "$"; }',
            "# A well-formed X-Request-ID is kept, otherwise nginx makes one (its random",
            "# $request_id, written in the UUID layout the gateway uses).",
            "map $request_id $pyserve_new_request_id {",
            '    "~^(?<a>.{8})(?<b>.{4})(?<c>.{4})(?<d>.{4})(?<e>.{12})$" "$a-$b-$c-$d-$e";',
            "}",
            "map $http_x_request_id $pyserve_request_id {",
            "    default $pyserve_new_request_id;",
            '    "~^[\\x21-\\x7e]{1,128}$" $http_x_request_id;',
            "}",
            "map $http_traceparent $pyserve_traceparent {",
            '    default "";',
            '    "~^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$" $http_traceparent;',
            "}",
            "# WebSocket upgrades pass through; other requests keep the upstream connection.",
            "map $http_upgrade $pyserve_connection {",
            '    default "upgrade";',
            '    "" "";',
            "}",
        ]

    def _security_maps(self) -> None:
        sec = self.security
        if sec is None:
            return
        headers = DEFAULT_HEADERS if sec.security_headers is None else sec.security_headers
        for i, (name, value) in enumerate(headers.items()):
            var = f"$pyserve_sec_{i}"
            upstream = "$upstream_http_" + name.lower().replace("-", "_")
            self.maps += [f"# {name}: the app's own value wins, as in the gateway.",
                          f"map {upstream} {var} {{", f'    "" {q(value)};', '    default "";',
                          "}"]
            self._sec_headers.append((name, var))
        if sec.blocked_ips or sec.allowed_ips is not None:
            self._ip_rules(sec)
        trusted = self.project.trusted_proxies
        if self.rate is not None:
            if list(self.rate.trusted_proxies) != list(sec.trusted_proxies):
                self.report.add("trusted_proxies", "nginx has one real-IP setting: the union "
                                "of security's and rate_limit's lists is trusted for both")
        if trusted:
            self.server += ["# X-Forwarded-For is believed only from trusted proxies."]
            self.server += [f"set_real_ip_from {p};" for p in trusted]
            self.server += ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;"]

    def _ip_rules(self, sec: SecurityOptions) -> None:
        # Not allow/deny: those run in nginx's access phase, after `return` and the CORS
        # preflight answers of the rewrite phase, which they would not stop. A server-level
        # `if` runs before any location, as the gateway's security extension runs first.
        self.maps += ["# security: blocked_ips, then allowed_ips (the real client address).",
                      "geo $pyserve_blocked {", "    default 0;"]
        self.maps += [f"    {ip} 1;" for ip in sec.blocked_ips] + ["}"]
        allowed = sec.allowed_ips
        self.maps += ["geo $pyserve_not_allowed {", f"    default {0 if allowed is None else 1};"]
        self.maps += [f"    {ip} 0;" for ip in allowed or []] + ["}"]
        self.maps += [
            "# /health and /metrics are the gateway's own and answer everyone.",
            'map "$pyserve_blocked$pyserve_not_allowed:$uri" $pyserve_refused {',
            "    default 1;",
            '    "~^..:/(health|metrics)$" 0;',
            '    "~^00:" 0;',
            "}",
        ]
        self.server += ["if ($pyserve_refused) {", '    return 403;', "}"]
        self._refusal_headers = True

    def _cors_maps(self) -> None:
        cors = self.cors
        if cors is None:
            return
        origins = list(cors.allow_origins)
        allow_all = "*" in origins
        fixed = allow_all and not cors.allow_credentials
        lines = ["# CORS: which origins may read responses.",
                 "map $http_origin $pyserve_cors_allowed {",
                 f"    default {1 if allow_all else 0};"]
        if not allow_all:
            for spec in origins:
                spec = spec.rstrip("/")
                if "*" in spec:
                    rx = re.escape(spec).replace(r"\*", r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
                    lines.append(f"    {q_regex('~^' + rx + '$')} 1;")
                else:
                    lines.append(f"    {q(spec)} 1;")
        lines += ['    "" 0;', "}"]
        methods = [m.upper() for m in cors.allow_methods]
        any_method = "*" in methods
        lines += ["map $http_access_control_request_method $pyserve_cors_method_ok {",
                  f"    default {1 if any_method else 0};"]
        if not any_method:
            alt = "|".join(re.escape(m) for m in methods)
            lines.append(f"    {q_regex('~*^ *(' + alt + ') *$')} 1;")
        lines.append("}")
        headers = [h.lower() for h in cors.allow_headers]
        any_header = "*" in headers
        lines += ["map $http_access_control_request_headers $pyserve_cors_headers_ok {",
                  f"    default {1 if any_header else 0};"]
        if not any_header:
            names = sorted(set(headers) | {"accept", "accept-language", "content-language",
                                           "content-type"})
            alt = "(" + "|".join(re.escape(h) for h in names) + ")"
            rx = f"~*^ *{alt} *(, *{alt} *)*$"
            lines += ['    "" 1;', f"    {q_regex(rx)} 1;"]
        lines.append("}")
        lines += [
            "# 204 for an allowed preflight, 403 for a refused one, empty otherwise.",
            'map "$request_method|$http_origin|$http_access_control_request_method|'
            '$pyserve_cors_allowed$pyserve_cors_method_ok$pyserve_cors_headers_ok" '
            "$pyserve_cors_preflight {",
            '    default "";',
            '    "~^OPTIONS\\|[^|]+\\|[^|]+\\|111$" 204;',
            '    "~^OPTIONS\\|[^|]+\\|[^|]+\\|" 403;',
            "}",
        ]
        acao = '"*"' if fixed else "$http_origin"
        lines += [
            "# Actual requests: only when the app did not set its own CORS headers.",
            "map \"$upstream_http_access_control_allow_origin|$pyserve_cors_allowed\" "
            "$pyserve_cors_origin {",
            '    default "";',
            f'    "|1" {acao};',
            "}",
        ]
        if cors.allow_credentials:
            lines += ["map $pyserve_cors_origin $pyserve_cors_credentials {",
                      '    "" "";', '    default "true";', "}"]
        if cors.expose_headers:
            lines += ["map $pyserve_cors_origin $pyserve_cors_expose {", '    "" "";',
                      f"    default {q(', '.join(cors.expose_headers))};", "}"]
        if not any_header:
            lines += ["map $http_access_control_request_headers $pyserve_cors_allow_headers {",
                      '    "" "";', f"    default {q(', '.join(cors.allow_headers))};", "}"]
        self.maps += lines
        self._cors_fixed = fixed
        self._cors_any_method = any_method
        self._cors_any_header = any_header
        if any_method:
            self.report.add("cors: allow_methods = ['*']", "the preflight answer echoes the "
                            "requested method as sent (the gateway upper-cases it)")

    def _rate_limit(self) -> None:
        rate = self.rate
        if rate is None:
            return
        self.http += [
            "# rate_limit: per client address, answered 429 with Retry-After.",
            f"limit_req_zone $binary_remote_addr zone=pyserve_rate:10m "
            f"rate={rate.requests_per_minute}r/m;",
            "limit_req_status 429;",
            "map $status $pyserve_retry_after {",
            '    default "";',
            f'    429 "{max(1, math.ceil(60 / rate.requests_per_minute))}";',
            "}",
        ]
        self.report.add("rate_limit", f"nginx's leaky bucket (burst={rate.burst_size - 1} "
                        f"nodelay) lets {rate.burst_size} requests through at once like the "
                        "token bucket; clients are kept in a 10 MB shared zone (about 160,000 "
                        f"addresses) instead of max_clients={rate.max_clients}, and "
                        "Retry-After is the refill interval, not the time until the next token")

    def _gzip(self) -> None:
        gz = self.gzip
        if gz is None:
            return
        self.http += [
            "# compression: gzip above minimum_size; event streams are never compressed.",
            "gzip on;",
            "# Vary is added below for every answer the gateway would consider compressing.",
            "gzip_vary off;",
            "gzip_proxied any;",
            f"gzip_comp_level {gz.compression_level};",
            f"gzip_min_length {gz.minimum_size};",
            "gzip_types " + " ".join(_GZIP_TYPES) + ";",
        ]
        skip = "|".join(re.escape(t.decode()) for t in sorted(_SKIP_TYPES))
        prefixes = "|".join(re.escape(t.decode()) for t in _SKIP_PREFIXES)
        keep = "|".join(re.escape(t.decode()) for t in sorted(_TEXTUAL_IMAGES))
        self.maps += [
            "map \"$status:$sent_http_content_type\" $pyserve_vary_encoding {",
            '    default "Accept-Encoding";',
            '    "~^(1..|204|206|304):" "";',
            '    "~^...:$" "";',
            f"    {q_regex('~*^...:(' + keep + ')( *;|$)')} \"Accept-Encoding\";",
            f"    {q_regex('~*^...:((' + skip + ')( *;|$)|(' + prefixes + '))')} \"\";",
            "}",
        ]
        self.report.add("compression", "stock nginx compresses with gzip only (no brotli or "
                        "zstd), for the listed text types rather than every type not "
                        "already compressed")

    def _caching(self) -> None:
        cache = self.cache
        if cache is None:
            return
        ttl = int(cache.cache_ttl)
        self.http += [
            "# caching: GET/HEAD 200 answers of the apps, for cache_ttl seconds.",
            f"proxy_cache_path {self.layout.cache_dir} levels=1:2 keys_zone=pyserve_cache:10m "
            f"max_size={cache.max_bytes} inactive={ttl}s use_temp_path=off;",
            "map $uri $pyserve_no_cache {",
            "    default 1;",
        ]
        for pattern in cache.cache_patterns:
            self.http.append(f"    {q_regex('~^' + glob_regex(pattern) + '$')} 0;")
        self.http.append("}")
        self.report.add("caching", "nginx caches what it proxies (apps and proxy_pass "
                        "locations), not static files or returns; X-Cache shows nginx's "
                        "$upstream_cache_status (also BYPASS, EXPIRED...) and no Age header "
                        "is added; max_entries has no equivalent (max_bytes bounds it)")

    def _auth(self) -> None:
        basic_done = False
        for n, ext in enumerate(self.auths):
            o = ext.options
            method = _opt(o, "method", "basic")
            skip = f"$pyserve_auth_skip_{n}"
            self._auth_cover(skip, list(_opt(o, "paths", []) or []),
                             list(_opt(o, "exclude_paths", []) or []))
            if method == "basic" and int(_opt(o, "max_failures", 0) or 0) > 0:
                self.report.add(f"auth #{n + 1}: max_failures", "nginx does not slow down a "
                                "client that keeps sending wrong passwords; put a limit_req "
                                "zone or fail2ban on its 401s")
            if method == "basic":
                if basic_done:
                    self.report.add(f"auth #{n + 1} (basic)", "nginx takes one auth_basic per "
                                    "location: its users are merged into the first file")
                    self.files["htpasswd"] += _htpasswd(_opt(o, "users", {}) or {})
                    continue
                basic_done = True
                realm = str(_opt(o, "realm", "pyserve-tui"))
                self.maps += [f"map {skip} $pyserve_auth_realm {{",
                              f"    default {q(realm)};", '    1 "off";', "}"]
                self.files["htpasswd"] = _htpasswd(_opt(o, "users", {}) or {})
                self.report.note("htpasswd (beside nginx.conf) holds the users' password "
                                 "hashes: keep it readable by nginx's workers only")
                self.report.add(f"auth #{n + 1} (basic)", "nginx's challenge has no "
                                "charset=\"UTF-8\" parameter, so a browser may send a "
                                "non-ASCII password in another encoding; its 401 answers "
                                "count no failures (see max_failures)")
                self._auth_lines += ["auth_basic $pyserve_auth_realm;",
                                     f"auth_basic_user_file {self.layout.auth_dir}/htpasswd;"]
            elif method == "forward":
                self._forward_auth(n, o, skip)
            else:
                self.report.add(f"auth #{n + 1} ({method})",
                                "stock nginx cannot check JWTs (that needs nginx Plus "
                                "auth_jwt, njs, or a forward-auth service: method = "
                                "\"forward\"); every protected request is refused with 401 "
                                "so nothing is exposed by accident")
                self.maps += [f"map {skip} $pyserve_auth_refuse_{n} {{", "    default 1;",
                              "    1 0;", "}"]
                if not self._bearer:
                    # The 401 page asks for a token where a JWT entry refused the request.
                    self.maps += [f"map $pyserve_auth_refuse_{n} $pyserve_bearer {{",
                                  '    default "";', '    1 "Bearer";', "}"]
                    self._bearer = True
                self._auth_lines += [f"if ($pyserve_auth_refuse_{n}) {{", "    return 401;",
                                     "}"]

    def _auth_cover(self, var: str, paths: list[str], excludes: list[str]) -> None:
        """`var` is 1 where an auth entry does not apply: outside `paths` (when given) or in
        `exclude_paths`, on nginx's normalised $uri. As in the gateway, a path holding a
        backslash or a control character (written or encoded) is always covered."""
        if not any("noncanonical" in m for m in self.maps):
            self.maps += [
                "# A path with a backslash or a control character: auth always applies to it.",
                "map $request_uri $pyserve_noncanonical {",
                "    default 0;",
                f"    {q_regex(_NONCANONICAL)} 1;",
                "}",
            ]
        out = var.replace("skip", "outside")
        self.maps += [f"map $uri {out} {{", f"    default {1 if paths else 0};"]
        self.maps += [f"    {q_regex('~' + auth_path_regex(p))} 1;" for p in excludes]
        self.maps += [f"    {q_regex('~' + auth_path_regex(p))} 0;" for p in paths]
        self.maps += ["}", f'map "$pyserve_noncanonical{out}" {var} {{', "    default 0;",
                      '    "01" 1;', "}"]

    def _forward_auth(self, n: int, o: Any, skip: str) -> None:
        url = str(_opt(o, "url", ""))
        try:
            parsed = parse_proxy_url(url)
        except ValueError as exc:
            self.report.add(f"auth #{n + 1} (forward)", f"bad url: {exc}")
            return
        name = f"/_pyserve_auth_{n}"
        # The subrequest's own $uri is its location; it shares the main request's variables,
        # so the decision is taken here, on the main request's (normalised) $uri.
        self._auth_lines += [f"set $pyserve_forward_skip_{n} {skip};",
                             f"auth_request {name};"]
        for k, header in enumerate(_opt(o, "response_headers", []) or []):
            var = f"$pyserve_auth_{n}_{k}"
            up = "$upstream_http_" + str(header).lower().replace("-", "_")
            self._auth_lines += [f"auth_request_set {var} {up};"]
            self._auth_header_sets.append(f"proxy_set_header {header} {var};")
        target = f"http://{parsed.host}:{parsed.port}{parsed.path or ''}"
        body = [
            "internal;",
            f"if ($pyserve_forward_skip_{n}) {{",
            "    return 204;",
            "}",
            f"proxy_pass {target};",
            f"proxy_read_timeout {_seconds(float(_opt(o, 'timeout', 10.0) or 10.0))};",
            "proxy_pass_request_body off;",
            'proxy_set_header Content-Length "";',
            "proxy_set_header X-Original-URI $request_uri;",
            "proxy_set_header X-Original-Method $request_method;",
            "proxy_set_header X-Forwarded-Method $request_method;",
            "proxy_set_header X-Forwarded-Uri $request_uri;",
            "proxy_set_header X-Forwarded-Host $http_host;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        ]
        self.locations.append(_Loc(f"= {name}", body))
        self.report.add(f"auth #{n + 1} (forward)",
                        "nginx's auth_request asks the service without the request body and "
                        "passes on only 401 and 403 (another refusal becomes 500); the client "
                        "gets nginx's page, not the auth service's own answer")

    def _upstreams(self) -> None:
        for unit in self.plan.units:
            self.http += [f"upstream {_upstream_name(unit)} {{",
                          f"    server {self.layout.upstream(unit)};", "    keepalive 32;",
                          "}"]
        if self.plan.units:
            self.report.add("hold_requests / 503", "nginx does not hold a request while an "
                            "app (re)starts: it answers 502 at once; its error pages are plain "
                            "text naming the request id, like the gateway's, but not the app "
                            "or the cause")

    def _builtins(self) -> None:
        self.locations.append(_Loc("= /health", [
            "# The gateway's own liveness answer.",
            "allow all;",
            "access_log off;",
            "types { }",
            'default_type "text/plain; charset=utf-8";',
            "add_header X-Request-ID $pyserve_request_id always;",
            'return 200 "OK";',
        ]))
        self.locations.append(_Loc("= /metrics", [
            "# Connection counters only, for loopback clients.",
            "stub_status;",
            "allow 127.0.0.1;",
            "allow ::1;",
            "deny all;",
        ]))
        self.report.add("/metrics", "replaced by nginx's stub_status (connection counts, "
                        "loopback only); per-app requests, latency and restarts come from "
                        "the engine (docker stats, kubectl top, journalctl) or an nginx "
                        "exporter")

    def error_pages(self, *, but: int | None = None) -> list[str]:
        """error_page lines sending the gateway's kind of answer (plain text naming the
        request id); a location with its own error_page must repeat the others."""
        pages = [f"error_page {code} @pyserve_error_{code};" for code in ERROR_CODES
                 if code != but]
        if self.cors is not None:
            # A refused preflight, told apart from other 403s (a static location maps
            # nginx's directory 403 to the gateway's 404).
            pages.append(f"error_page {CORS_REFUSED} = @pyserve_cors_refused;")
        return pages

    def _headers_before(self, refuser: str) -> list[str]:
        """The headers on an answer the `refuser` extension gives itself: only extensions
        before it in the pipeline see that answer on its way out (and the gateway core,
        which sets the ids)."""
        order = self.types
        at = order.index(refuser) if refuser in order else len(order)

        def before(type_: str) -> bool:
            return type_ in order and order.index(type_) < at

        out = []
        for line in self._pipeline_headers():
            # security adds its headers to its own refusals too.
            if "$pyserve_sec_" in line and not (before("security") or refuser == "security"):
                continue
            if ("Access-Control" in line or "Vary Origin" in line) and not before("cors"):
                continue
            if "$pyserve_vary_encoding" in line and not before("compression"):
                continue
            if "Retry-After" in line and refuser != "rate_limit":
                continue
            out.append(line)
        return out

    def _error_locations(self) -> None:
        # Who answers each error in the gateway: it decides which headers the answer gets.
        refusers = {401: "auth", 403: "security", 429: "rate_limit"}
        if self.cors is not None:
            self.named.append(_Loc("@pyserve_cors_refused", [
                *self._headers_before("cors"), "types { }",
                'default_type "text/plain; charset=utf-8";',
                'return 403 "403 Forbidden - CORS preflight refused; request id '
                '$pyserve_request_id\\n";']))
        for code in ERROR_CODES:
            headers = self._headers_before(refusers.get(code, "routing"))
            if code == 401 and self._bearer:
                headers = ["add_header WWW-Authenticate $pyserve_bearer always;", *headers]
            text = f"{code} {_REASONS[code]} - request id $pyserve_request_id\n"
            self.named.append(_Loc(f"@pyserve_error_{code}", [
                *headers, "types { }", 'default_type "text/plain; charset=utf-8";',
                f'return {code} "{text}";']))

    def _unmapped_extensions(self) -> None:
        known = {"routing", "security", "caching", "monitoring", "asgi",
                 "process_orchestration", "cors", "rate_limit", "compression", "auth"}
        for ext in self.project.extensions:
            if ext.type not in known:
                self.report.add(f"extension {ext.type!r}", "a plugin runs inside the gateway; "
                                "nginx has no equivalent and it is left out")

    # --- locations -----------------------------------------------------------------------------

    def _pipeline_headers(self, names_set: Iterable[str] = ()) -> list[str]:
        """add_header lines every pipeline response carries (security, CORS, ids...)."""
        taken = {n.lower() for n in names_set}
        lines = []
        for name, var in self._sec_headers:
            if name.lower() not in taken:
                lines.append(f"add_header {name} {var} always;")
        if self.cors is not None:
            lines.append("add_header Access-Control-Allow-Origin $pyserve_cors_origin always;")
            if self.cors.allow_credentials:
                lines.append("add_header Access-Control-Allow-Credentials "
                             "$pyserve_cors_credentials always;")
            if self.cors.expose_headers:
                lines.append("add_header Access-Control-Expose-Headers $pyserve_cors_expose "
                             "always;")
            if not self._cors_fixed:
                lines.append("add_header Vary Origin always;")
        if self.gzip is not None:
            lines.append("add_header Vary $pyserve_vary_encoding always;")
        if self.rate is not None:
            lines.append("add_header Retry-After $pyserve_retry_after always;")
        lines.append("add_header X-Request-ID $pyserve_request_id always;")
        lines.append("add_header traceparent $pyserve_traceparent always;")
        return lines

    def _guards(self, headers: list[str]) -> list[str]:
        """What runs before the location's own action: rate limit, auth, CORS preflight."""
        lines: list[str] = []
        if self.rate is not None:
            lines.append(f"limit_req zone=pyserve_rate burst={self.rate.burst_size - 1} "
                         "nodelay;")
        lines += self._auth_lines
        if self.cors is not None:
            sec = [h for h in headers if not h.startswith("add_header Access-Control")
                   and not h.startswith("add_header Vary")]
            acao = '"*"' if self._cors_fixed else "$http_origin"
            methods = ("$http_access_control_request_method" if self._cors_any_method
                       else q(", ".join(m.upper() for m in self.cors.allow_methods)))
            allow_h = ("$http_access_control_request_headers" if self._cors_any_header
                       else "$pyserve_cors_allow_headers")
            pre = [f"add_header Access-Control-Allow-Origin {acao} always;",
                   f"add_header Access-Control-Allow-Methods {methods} always;",
                   f"add_header Access-Control-Max-Age {self.cors.max_age} always;",
                   'add_header Vary "Origin, Access-Control-Request-Method, '
                   'Access-Control-Request-Headers" always;',
                   f"add_header Access-Control-Allow-Headers {allow_h} always;"]
            if self.cors.allow_credentials:
                pre.append('add_header Access-Control-Allow-Credentials "true" always;')
            lines += ["if ($pyserve_cors_preflight = 204) {"]
            lines += ["    " + h for h in pre + sec] + ["    return 204;", "}"]
            lines += ["if ($pyserve_cors_preflight = 403) {"]
            lines += ["    " + h for h in sec]
            lines += [f"    return {CORS_REFUSED};", "}"]
        return lines

    def _locations(self) -> None:
        routing = self._ext("routing")
        locations: dict[str, LocationAction] = dict(routing.regex_locations) if routing else {}
        order = self.types
        routing_pos = order.index("routing") if "routing" in order else len(order)
        apps_pos = min([order.index(t) for t in ("process_orchestration", "asgi")
                        if t in order] or [len(order)])
        apps_first = apps_pos < routing_pos
        prefixes = [u.prefix for u in self.plan.units]
        emitted: set[str] = set()

        def shadowed(kind: LocationKind, text: str) -> bool:
            """A routing location the gateway never reaches: an earlier app owns its path."""
            if not apps_first or kind not in (LocationKind.EXACT, LocationKind.PREFIX,
                                              LocationKind.PREFIX_STOP):
                return False
            return any(p == "" or text == p or text.startswith(p + "/") for p in prefixes)

        app_locs: list[_Loc] = []
        for unit in self.plan.units:
            app_locs += self._app_locations(unit, apps_first)
        route_locs: list[_Loc] = []
        has_root_prefix = any(parse_pattern(p) == (LocationKind.PREFIX, "/") for p in locations)
        for pattern, action in locations.items():
            kind, text = parse_pattern(pattern)
            if shadowed(kind, text):
                continue
            if kind is LocationKind.DEFAULT:
                if has_root_prefix or "" in prefixes:
                    continue
                match = "/"
            elif kind.is_regex:
                match = f"{kind.value} {q_regex(text)}"
            else:
                match = f"{kind.value} {text}".strip() if kind.value else text
            route_locs.append(_Loc(match, self._route_body(pattern, kind, action)))
        if not apps_first and self.plan.units:
            self.report.add("pipeline order", "routing comes before the apps in the pipeline: "
                            "in the gateway a routing location that matches takes the request "
                            "even when an app's path is longer; nginx picks the longest prefix")
        for loc in (app_locs + route_locs) if apps_first else (route_locs + app_locs):
            if loc.match in emitted:
                continue
            emitted.add(loc.match)
            self.locations.append(loc)
        if "/" not in emitted:
            headers = self._pipeline_headers()
            self.locations.append(_Loc("/", ["# No location matched: the gateway's 404.",
                                             *self._guards(headers), *headers, *self._deferred(
                                                 headers + _plain_return(404, "404 Not Found"))]))

    def _proxy_common(self, timeout: float) -> list[str]:
        lines = [
            "proxy_http_version 1.1;",
            "proxy_set_header Host $http_host;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $pyserve_connection;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
            "proxy_set_header X-Forwarded-Host $http_host;",
            "proxy_set_header X-Request-ID $pyserve_request_id;",
            "proxy_set_header traceparent $pyserve_traceparent;",
            "proxy_hide_header X-Request-ID;",
            "proxy_hide_header traceparent;",
            f"proxy_read_timeout {_seconds(timeout)};",
            f"proxy_send_timeout {_seconds(timeout)};",
            "proxy_request_buffering off;",
        ]
        lines += self._auth_header_sets
        if self.cache is not None:
            ttl = int(self.cache.cache_ttl)
            lines += [
                "proxy_cache pyserve_cache;",
                "proxy_cache_key $scheme$http_host$request_uri;",
                "proxy_cache_methods GET HEAD;",
                f"proxy_cache_valid 200 {ttl}s;",
                "proxy_cache_lock on;",
                f"proxy_cache_lock_timeout {_seconds(self.cache.single_flight_timeout)};",
                "proxy_no_cache $pyserve_no_cache;",
                "proxy_cache_bypass $pyserve_no_cache;",
                "add_header X-Cache $upstream_cache_status always;",
            ]
            self.report.add("caching and streaming", "nginx must buffer a response to cache "
                            "it, so cached paths are buffered: an event stream under one "
                            "should send `X-Accel-Buffering: no` (nginx then streams it)")
        else:
            lines += ["proxy_buffering off;", "proxy_cache off;"]
        return lines

    def _app_locations(self, unit: Unit, apps_first: bool) -> list[_Loc]:
        headers = self._pipeline_headers()
        upstream = _upstream_name(unit)
        body = [*self._guards(headers), *self._proxy_common(unit.proxy_timeout), *headers]
        if unit.strip_path and unit.prefix:
            body.insert(0, f"proxy_set_header X-Forwarded-Prefix {q(unit.prefix)};")
        else:
            body.insert(0, "proxy_set_header X-Forwarded-Prefix \"\";")
        # The prefix goes when the app's server expects it gone (`proxy_strips`).
        passes = (f"proxy_pass http://{upstream}/;" if proxy_strips(unit)
                  else f"proxy_pass http://{upstream};")
        label = f"# app {unit.name!r} ({'mount' if unit.mount else 'process'})"
        if not unit.prefix:
            return [_Loc("/", [label, *body, passes])]
        stop = "^~ " if apps_first else ""
        return [_Loc(f"= {unit.prefix}", [label, *body, passes]),
                _Loc(f"{stop}{unit.prefix}/", [label, *body, passes])]

    def _route_body(self, pattern: str, kind: LocationKind, action: LocationAction) -> list[str]:
        names = [h.partition(":")[0].strip() for h in action.headers]
        self._groups = (list(re.compile(parse_pattern(pattern)[1], re.IGNORECASE).groupindex)
                        if kind.is_regex else [])
        own = [f"add_header {n.strip()} {q_template(v.strip(), self._groups)} always;"
               for n, _, v in (h.partition(":") for h in action.headers)]
        headers = own + self._pipeline_headers(names)
        body = [f"# {pattern}", *self._guards(headers)]
        if action.return_ is not None:
            answer = self._return(action)
            if answer[-1].startswith("return 30"):
                # A redirect without a body: nothing the gateway would compress, no Vary.
                headers = [h for h in headers if "$pyserve_vary_encoding" not in h]
            # The headers here too: a refusal by limit_req is answered from this location.
            return body + headers + self._deferred(headers + answer)
        if action.proxy_pass is not None:
            hides = [f"proxy_hide_header {n};" for n in names]
            return body + self._proxy_pass(kind, action) + hides + headers
        if action.root is not None:
            return body + self._static(action, headers)
        self.report.add(f"location {pattern}", "a location with only `headers` passes the "
                        "request on in the gateway; nginx has no pass-on, so it answers 404 "
                        "with those headers")
        return body + headers + self._deferred(headers + _plain_return(404, "404 Not Found"))

    def _deferred(self, lines: list[str]) -> list[str]:
        """Answer from a named location, reached through try_files: nginx's `return` runs in
        the rewrite phase, before limit_req and auth would see the request; try_files runs
        after them, as the gateway's routing runs after the extensions before it."""
        self._returns += 1
        name = f"@pyserve_return_{self._returns}"
        self.named.append(_Loc(name, lines))
        return [f"try_files /.pyserve-no-such-file {name};"]

    def _return(self, action: LocationAction) -> list[str]:
        assert action.return_ is not None
        code, _, text = action.return_.strip().partition(" ")
        text = text.lstrip()
        status = int(code)
        if status in (301, 302, 303, 307, 308) and text:
            self._redirect_note()
            return [f"return {status} {q_template(text, self._groups)};"]
        if status in (204, 304) or not text:
            return [f"return {status};"]
        ctype = action.content_type or "text/plain"
        if ctype.startswith("text/") and "charset" not in ctype:
            ctype += "; charset=utf-8"
        return ["types { }", f"default_type {q(ctype)};",
                f"return {status} {q_template(text, self._groups)};"]

    def _redirect_note(self) -> None:
        self.report.add("redirects", "nginx's redirects (a `return 30x`, a directory without "
                        "its trailing slash) carry a small text/html page; the gateway's have "
                        "an empty or one-line plain body. Status and Location are the same")

    def _proxy_pass(self, kind: LocationKind, action: LocationAction) -> list[str]:
        assert action.proxy_pass is not None
        url = parse_proxy_url(action.proxy_pass)
        base = f"http://{url.host}:{url.port}"
        lines = self._proxy_common(action.proxy_timeout)
        lines = [line for line in lines if "X-Forwarded-Prefix" not in line]
        if kind.is_regex and url.path is not None:
            # nginx allows a URI on a regex location only through variables; the query
            # string is then added by hand, as the gateway does unless the URL has one.
            path = q_template(url.path, self._groups)[1:-1]
            query = "?" + url.query.decode() if url.query is not None else "$is_args$args"
            lines.append(f'proxy_pass "{base}{path}{query}";')
            if _PLACEHOLDER.search(url.path):
                self.report.add(f"proxy_pass {action.proxy_pass}", "nginx substitutes the "
                                "captured groups as they matched the decoded path; the "
                                "gateway percent-encodes them")
            if not re.fullmatch(r"[0-9.]+|\[[0-9a-fA-F:]+\]", url.host):
                self.report.add(f"proxy_pass {action.proxy_pass}", "an upstream named by "
                                "host name in a URL with variables needs a `resolver` "
                                "directive in nginx")
        elif url.path is not None:
            query = "?" + url.query.decode() if url.query is not None else ""
            lines.append(f"proxy_pass {base}{url.path}{query};")
        else:
            lines.append(f"proxy_pass {base};")
        return lines

    def _static(self, action: LocationAction, headers: list[str]) -> list[str]:
        assert action.root is not None
        self._redirect_note()
        root = self.layout.static_root(action.root)
        cache = ([f"add_header Cache-Control {q(action.cache_control)};"]
                 if action.cache_control else [])
        lines = [f"root {q(root)};", f"index {action.index_file};", "charset utf-8;",
                 "charset_types " + " ".join(_CHARSET_TYPES) + ";"]
        if self.gzip is not None:
            # The gateway answers a range request with an uncompressed 206 that does not
            # vary by encoding; nginx would send the whole file gzipped.
            lines += ["if ($http_range) {", "    gzip off;",
                      *("    " + h for h in headers if "$pyserve_vary_encoding" not in h),
                      *("    " + h for h in cache), "}"]
        self.report.add("range requests", "nginx leaves Accept-Ranges off its 206 answers, and "
                        "answers an unsatisfiable range (416) with its own HTML page")
        if cache:
            # add_header without `always` here: only on file answers, like the gateway's.
            self.report.add("cache_control", "nginx sends it on every 2xx/3xx answer of "
                            "the location (also redirects), the gateway only on files")
        hidden = ["# Hidden files are not served (.well-known aside).",
                  f"if ($uri ~ {q_regex(_HIDDEN)}) {{", *["    " + h for h in headers],
                  "    return 404;", "}"]
        # A directory without its index file: nginx says 403, the gateway 404.
        lines += hidden + headers + cache + ["error_page 403 = @pyserve_error_404;"]
        if not action.spa_fallback:
            lines += self.error_pages(but=403)
        if action.spa_fallback:
            self._spa += 1
            name = f"@pyserve_spa_{self._spa}"
            lines += [f"error_page 404 = {name};", "recursive_error_pages on;",
                      *(e for e in self.error_pages(but=404)
                        if not e.startswith("error_page 403 "))]
            # Its own 404 (an excluded or hidden path) is the gateway's page too.
            body = [f"root {q(root)};", *lines[2:4]]
            excludes = list(action.exclude_patterns)
            regexes = [("^" + re.escape(p) if not any(c in p for c in "*?[")
                        else "^" + glob_regex(p) + "$") for p in excludes]
            regexes.append(_HIDDEN)
            body += [f"if ($uri ~ {q_regex('|'.join(f'({r})' for r in regexes))}) {{",
                     *["    " + h for h in headers], "    return 404;", "}"]
            body += headers + cache + [f"try_files /{action.index_file} =404;"]
            self.named.append(_Loc(name, ["# SPA fallback: the app shell for unknown "
                                              "paths.", *body]))
        self.report.add("static files", "nginx's ETag is built from the modification time in "
                        "seconds, the gateway's in nanoseconds: the values differ, their use "
                        "(304, If-Range) is the same")
        return lines


def _plain_return(status: int, text: str) -> list[str]:
    return ["types { }", 'default_type "text/plain; charset=utf-8";',
            f"return {status} {q(text + chr(10))};"]


def _seconds(value: float) -> str:
    ms = int(round(value * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _upstream_name(unit: Unit) -> str:
    return "pyserve_" + re.sub(r"[^A-Za-z0-9_]", "_", unit.name)


def _htpasswd(users: dict[str, str]) -> str:
    return "".join(f"{name}:{hash_}\n" for name, hash_ in users.items())


def render_nginx(project: ProjectConfig, plan: DeployPlan, layout: NginxLayout,
                 report: Report) -> NginxConfig:
    """nginx.conf (and its htpasswd file, if any) for `project` laid out by `layout`."""
    return NginxBuilder(project, plan, layout, report).build()
