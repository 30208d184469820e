"""Differential test: the routing extension against real nginx, which it claims to mirror.

Generated location sets (every modifier: ``=``, ``^~``, ``~``, ``~*``, plain prefix, and
``__default__`` as nginx's ``location /``; random, seeded) each answer ``return 200 "L<k>"``,
so a response names the location that took it. Generated request targets (slash runs, ``.``
and ``..`` segments, ``%2e``, ``%2F``, ``%00``, ``%zz``, escaped letters, case variants,
trailing slashes, queries, fragments) are sent as raw request lines over plain sockets to nginx
and to the gateway, and the answers compared: the status, and the location for a 200.

Then one ``root`` with a generated tree (folders, index files, hidden files, symlinks in and
out, unicode and odd names): status, Location, body, Content-Type, Content-Length,
Last-Modified, ETag presence and range answers. Where the gateway is stricter than nginx by
design (README, "Differences from the contract") the test asserts the gateway's documented
answer instead, so a difference is either listed there or a failure here.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.harness import serve_config
from tests.support.nginx import NGINX, SKIP_REASON, running_nginx
from tests.support.routing import RawResponse, raw_http

pytestmark = pytest.mark.skipif(NGINX is None, reason=SKIP_REASON)

SEED = 1313
LOCATION_SETS = 30
PATHS_PER_SET = 60
CONCURRENCY = 16

# --- generated location sets ----------------------------------------------------------------

EXACT = ["/", "/admin", "/api", "/api/", "/x/b.php", "/static/", "/café", "/a/b"]
PREFIX = ["/", "/api/", "/api", "/static/", "/admin", "/a/", "/a/x/", "/img/", "/Static/",
          "/café/", "/x"]
REGEX = [r"\.php$", r"^/api/(?P<ver>v\d+)/", r"^/admin", r"/x/", r"^/caf..$", r"\.png$",
         r"^/static/.*\.php$", r"^/a/.+/b$", r"//", r"/\./", r"%2[eE]", r"\?", r"#",
         r"^/[^/]*$", r"/$", r"\.\.", r"^/api/(?P<rest>.*)$", r"\\", "\x01"]
REGEX_NOCASE = [r"\.PNG$", r"^/ADMIN", r"^/api/", r"CAF", r"\.PhP$", r"^/STATIC/",
                r"É", r"^/a/X/"]


@dataclass(frozen=True)
class Loc:
    kind: str  # "=", "^~", "~", "~*", "", "default"
    text: str

    @property
    def gateway_key(self) -> str:
        return "__default__" if self.kind == "default" else self.kind + self.text

    def nginx_block(self, label: str) -> str:
        if self.kind == "default":
            head = "location /"
        elif self.kind in ("~", "~*"):
            # In a quoted nginx string `\\` is one backslash; other escapes stay as written.
            text = self.text.replace("\\", "\\\\")
            head = f'location {self.kind} "{text}"'
        else:
            head = f"location {self.kind} {self.text}" if self.kind else f"location {self.text}"
        return f'{head} {{ return 200 "{label}"; }}'


def location_set(rng: random.Random) -> list[Loc]:
    locs: list[Loc] = []
    prefixes: set[str] = set()
    for _ in range(rng.randint(2, 8)):
        kind = rng.choice(["=", "^~", "~", "~*", ""])
        if kind == "=":
            text = rng.choice(EXACT)
        elif kind in ("^~", ""):
            text = rng.choice(PREFIX)
            if text in prefixes:  # nginx refuses a prefix written twice
                continue
            prefixes.add(text)
        else:
            text = rng.choice(REGEX if kind == "~" else REGEX_NOCASE)
        loc = Loc(kind, text)
        if loc not in locs:
            locs.append(loc)
    if "/" not in prefixes and rng.random() < 0.5:
        locs.insert(rng.randrange(len(locs) + 1), Loc("default", ""))
    return locs


def toml_key(text: str) -> str:
    if "'" not in text and not any(ord(c) < 0x20 for c in text):
        return f"'{text}'"
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\' else c
                         for c in text) + '"'


def gateway_config(locs: list[Loc]) -> str:
    lines = ['[[extensions]]', 'type = "routing"', "[extensions.config.regex_locations]"]
    lines += [f'{toml_key(loc.gateway_key)} = {{ return = "200 L{k}" }}'
              for k, loc in enumerate(locs)]
    return "\n".join(lines) + "\n"


def nginx_server(name: str, locs: list[Loc]) -> str:
    blocks = "\n        ".join(loc.nginx_block(f"L{k}") for k, loc in enumerate(locs))
    return f"""
    server {{
        listen 127.0.0.1:{{port}};
        server_name {name};
        root {{dir}}/no-such-root;
        {blocks}
    }}"""


# --- generated request targets --------------------------------------------------------------

BASE_PATHS = ["/", "/admin", "/admin/", "/api", "/api/", "/api/v1/users", "/api/v2/x.php",
              "/static/x.php", "/static/img/c.png", "/a/x/b", "/a/b", "/img/a.PNG",
              "/x/b.php", "/café", "/cafe", "/Admin", "/ADMIN/x", "/Static/y", "/a/x/",
              "/x", "/xy", "/caf", "/a/b/c.PhP"]


def encode(path: str) -> str:
    """Percent-encode what a request line cannot carry (non-ASCII, space)."""
    return "".join(c if 0x20 < ord(c) < 0x7f else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in path)


def _slash_positions(path: str) -> list[int]:
    return [i for i, c in enumerate(path) if c == "/"]


def mutate(path: str, rng: random.Random) -> str:
    """One spelling of `path` (already encoded) that nginx must normalise, or refuse."""
    slashes = _slash_positions(path) or [0]
    at = rng.choice(slashes)
    letters = [i for i, c in enumerate(path) if c.isalpha()]
    op = rng.randrange(17)
    if op == 0:
        return path[:at] + "/" + path[at:]                       # //
    if op == 1:
        return path[:at] + "/." + path[at:]                      # /./
    if op == 2:
        return path[:at] + "/zz/.." + path[at:]                  # /zz/../
    if op == 3:
        return path[:at] + rng.choice(["/%2e", "/%2E", "/.%2e/zz/.."]) + path[at:]
    if op == 4 and at > 0:
        return path[:at] + rng.choice(["%2F", "%2f", "%2F%2F"]) + path[at + 1:]
    if op == 5 and letters:
        i = rng.choice(letters)
        return path[:i] + rng.choice(["%{:02x}", "%{:02X}"]).format(ord(path[i])) + path[i + 1:]
    if op == 6:
        return path.swapcase() if rng.random() < 0.5 else path.upper()
    if op == 7:
        return (path.rstrip("/") or "/") if path.endswith("/") else path + "/"
    if op == 8:
        return path + rng.choice(["?q=1", "?a=/../../b", "?%zz", "?x=%00", "#frag", "#/../.."])
    if op == 9:
        return path + rng.choice(["%00", "%zz", "%", "%4", "%2", "%g0"])
    if op == 10:
        return rng.choice(["/..", "/%2e%2e", "/.%2e", "/zz/../..", "/zz/%2e%2e/.."]) + path
    if op == 11:
        return path + rng.choice(["/..", "/.", "/%2e%2e", "/%2e", "/..%2f", "/../"])
    if op == 12:
        return path[:at] + rng.choice(["%3F", "%23", "%25", "%5C", "%01", "%20"]) + path[at:]
    if op == 13:
        return path[:at] + "/" + "/" * rng.randint(1, 3) + path[at:]
    if op == 14:
        return path.replace(".", rng.choice(["%2e", "%2E"]), 1)
    if op == 15 and path.startswith("/"):
        return "http://{host}" + path                             # absolute form
    return path


def targets_for(locs: list[Loc], rng: random.Random) -> list[str]:
    bases = [encode(p) for p in BASE_PATHS]
    bases += [encode(loc.text) for loc in locs if loc.kind in ("=", "^~", "")]
    found: list[str] = list(dict.fromkeys(bases))
    while len(found) < PATHS_PER_SET:
        target = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            target = mutate(target, rng)
        if target not in found:
            found.append(target)
    return found[:PATHS_PER_SET]


# --- sending --------------------------------------------------------------------------------

def request(target: str, host: str, *headers: str, method: str = "GET") -> bytes:
    """A raw request; an absolute-form target names `host` too (nginx picks its server by
    the target's host then)."""
    target = target.replace("{host}", host)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", *headers,
             "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def send_all(port: int, requests: Iterable[bytes]) -> list[RawResponse]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(raw: bytes) -> RawResponse:
        async with gate:
            return await raw_http(port, raw)

    return list(await asyncio.gather(*(one(r) for r in requests)))


def answer(r: RawResponse) -> str:
    """What must agree for a location: the status, and which location answered a 200."""
    return f"200 {r.body.decode()}" if r.status == 200 else str(r.status)


# --- the location test ----------------------------------------------------------------------

async def test_location_selection_matches_nginx(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sets = [location_set(rng) for _ in range(LOCATION_SETS)]
    targets = [targets_for(locs, rng) for locs in sets]
    servers = "".join(nginx_server(f"s{i}", locs) for i, locs in enumerate(sets))
    servers = servers.replace("{dir}", str(tmp_path / "nginx"))
    mismatches = []
    compared = 0
    async with running_nginx(tmp_path / "nginx", servers) as nginx_port:
        for i, (locs, paths) in enumerate(zip(sets, targets, strict=True)):
            theirs = await send_all(nginx_port, (request(t, f"s{i}") for t in paths))
            folder = tmp_path / f"gw{i}"
            folder.mkdir()
            async with serve_config(gateway_config(locs), folder) as gw:
                ours = await send_all(gw.port, (request(t, "gw") for t in paths))
            for target, n, g in zip(paths, theirs, ours, strict=True):
                compared += 1
                if answer(n) != answer(g):
                    mismatches.append(f"set {i} {[loc.gateway_key for loc in locs]} "
                                      f"{target!r}: nginx {answer(n)}, gateway {answer(g)}")
    assert compared == LOCATION_SETS * PATHS_PER_SET
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(
        mismatches[:40])


# --- the static files test ------------------------------------------------------------------

DIGITS = b"0123456789abcdefghijklmnopqrstuvwxyz"


def build_tree(base: Path, rng: random.Random) -> tuple[Path, list[str], list[str]]:
    """A site with files and folders; returns it, its file paths and its folder paths."""
    site = base / "site"
    files = {
        "index.html": b"<h1>home</h1>", "a.txt": b"plain text", "b.css": b"p{}",
        "c.js": b"console.log(1)", "d.json": b"{}", "e.svg": b"<svg/>",
        "f.png": b"\x89PNG\r\n", "noext": b"no extension", "empty.txt": b"", "digits.txt": DIGITS,
        "sub/index.html": b"sub index", "sub/page.html": b"<p>page</p>",
        "sub/deeper/x.txt": b"deep", "noindex/file.txt": b"in noindex",
        ".hidden.txt": b"hidden", ".git/config": b"[core]", "sub/.env": b"SECRET=1",
        ".well-known/security.txt": b"contact: me", "café/menu.txt": "menü".encode(),
        "日本/index.html": "<p>日本</p>".encode(), "sp ace.txt": b"space", "per%cent.txt": b"pct",
        "q?mark.txt": b"question", "we ird/index.html": b"weird dir", "UPPER.TXT": b"upper",
        "a..b.txt": b"dots",
    }
    for n in range(6):  # a few seeded names and folders
        name = "".join(rng.choice("abcxyz-_.") for _ in range(rng.randint(3, 8))).strip(".")
        folder = rng.choice(["", "sub/", "gen/", "gen/deep/"])
        files[f"{folder}{name or 'n'}{n}.txt"] = f"generated {n}".encode()
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(b"outside the root")
    os.symlink("a.txt", site / "link-in.txt")
    os.symlink("sub", site / "linkdir-in")
    os.symlink(base / "outside" / "secret.txt", site / "link-out.txt")
    os.symlink(base / "outside", site / "linkdir-out")
    os.utime(site / "a.txt", (1_700_000_000, 1_700_000_000))
    all_files, all_dirs = [], []
    for root, dirs, names in os.walk(site, followlinks=False):
        rel = "/" + os.path.relpath(root, site).replace(os.sep, "/") + "/"
        rel = "/" if rel == "/./" else rel
        all_dirs.append(rel)
        all_files += [rel + n for n in names]
        all_files += [rel + d for d in dirs if os.path.islink(os.path.join(root, d))]
    return site, sorted(all_files), sorted(all_dirs)


def static_targets(files: list[str], dirs: list[str], rng: random.Random) -> list[str]:
    out: list[str] = []
    for path in files + dirs + [d.rstrip("/") for d in dirs if d != "/"]:
        enc = "".join(c if c.isascii() and c not in " %?#" else
                      "".join(f"%{b:02X}" for b in c.encode()) for c in path)
        out.append(enc)
        out.append(mutate(enc, rng))
    out += ["/sub?x=1", "//sub", "///sub", "/./sub", "/x/../sub", "//sub?a=b", "/%2e/sub",
            "/caf%C3%A9", "/we%20ird", "/sub/../.hidden.txt", "/a.txt/", "/missing",
            "/sub/missing/", "/../a.txt", "/a.txt%00", "/a%zz.txt", "/sub%2Fpage.html",
            "/sub%5Cpage.html", "/a.TXT", "/upper.txt", "/q%3Fmark.txt", "/per%25cent.txt",
            "/sp%20ace.txt", "/linkdir-in", "/linkdir-out/secret.txt", "/.well-known/",
            "/noindex", "/noindex/", "/sub/deeper", "/sub/deeper/"]
    return list(dict.fromkeys(out))


RANGES = ["bytes=0-4", "bytes=5-", "bytes=-3", "bytes=10-20", "bytes=30-100", "bytes=36-",
          "bytes=100-", "bytes=-0", "bytes=0-0", "bytes=5-2", "bytes=0-1,3-4", "bytes=x-y",
          "items=0-4", "bytes=-100", "bytes = 3 - 4", "BYTES=1-1", "bytes=-", "bytes",
          "bytes= 1 - 2", "bytes=- 3", "bytes=0-", "bytes=99999999999999999999-",
          "bytes=0-99999999999999999999"]

STATIC_NGINX = """
    server {{
        listen 127.0.0.1:{{port}};
        server_name static;
        absolute_redirect off;
        root {root};
        index index.html;
        types {{ text/html html; text/plain txt; text/css css; application/javascript js;
                application/json json; image/svg+xml svg; image/png png; }}
        default_type application/octet-stream;
        charset utf-8;
        charset_types text/html text/plain text/css application/javascript application/json
                      image/svg+xml;
        location / {{ }}
    }}"""

STATIC_GATEWAY = """
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"/" = { root = "./site" }
"""

_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)


def by_design(target: str, site: Path, range_header: str | None) -> int | None:
    """The gateway's documented answer where it deliberately differs from nginx (README,
    "Differences from the contract"), or None where it must answer as nginx does."""
    from gateway.routing.uri import InvalidURI, normalise

    try:
        path = normalise(target.partition("?")[0].encode()).decode("utf-8", "surrogateescape")
    except InvalidURI:
        return None  # both 400
    if _ENCODED_SEPARATOR.search(target.partition("?")[0]):
        return 403  # an encoded separator is refused, not read as a separator
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7f for c in path):
        return 403
    segments = [s for s in path.split("/") if s]
    if any(s.startswith(".") and s != ".well-known" for s in segments):
        return 404  # hidden files stay hidden
    real = os.path.realpath(os.path.join(site, *segments))
    if not (real == str(site) or real.startswith(str(site) + os.sep)):
        return 404  # a symlink out of the root is not followed
    if path.endswith("/") and os.path.isdir(real) and not os.path.exists(
            os.path.join(real, "index.html")):
        return 404  # a folder without index: nginx says 403 (listing forbidden)
    if range_header is not None and "," in range_header and os.path.isfile(real):
        return 200  # several ranges: the whole file rather than multipart/byteranges
    return None


def static_answer(r: RawResponse) -> dict[str, object]:
    h = r.headers
    out: dict[str, object] = {"status": r.status}
    if r.status in (200, 206):
        out |= {"body": r.body, "content-type": h.get("content-type"),
                "content-length": h.get("content-length"),
                "content-range": h.get("content-range"), "etag": "etag" in h,
                "last-modified": h.get("last-modified")}
    if r.status == 416:
        out["content-range"] = h.get("content-range")
    if r.status in (301, 302):
        out["location"] = h.get("location")
    return out


async def test_static_files_match_nginx(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    site, files, dirs = build_tree(tmp_path, rng)
    targets = static_targets(files, dirs, rng)
    cases: list[tuple[str, tuple[str, ...], str]] = [(t, (), "GET") for t in targets]
    for name in ("/digits.txt", "/a.txt", "/empty.txt", "/index.html"):
        cases += [(name, (f"Range: {r}",), "GET") for r in RANGES]
    a_txt = "Tue, 14 Nov 2023 22:13:20 GMT"  # a.txt's mtime, set in build_tree
    for headers in [(f"If-Modified-Since: {a_txt}",), ("If-Modified-Since: Mon, 01 Jan 2001 "
                    "00:00:00 GMT",), ("If-None-Match: *",), ('If-None-Match: "nope"',),
                    ("Range: bytes=0-1", f"If-Range: {a_txt}"),
                    ("Range: bytes=0-1", "If-Range: Mon, 01 Jan 2001 00:00:00 GMT")]:
        cases.append(("/a.txt", headers, "GET"))
    cases += [("/a.txt", (), "HEAD"), ("/sub", (), "HEAD"), ("/a.txt", (), "POST"),
              ("/a.txt", (), "DELETE")]

    def raw(target: str, headers: tuple[str, ...], method: str, host: str) -> bytes:
        extra = [*headers, "Content-Length: 0"] if method in ("POST", "DELETE") else headers
        return request(target, host, *extra, method=method)

    async with running_nginx(tmp_path / "nginx", STATIC_NGINX.format(root=site)) as port:
        theirs = await send_all(port, (raw(*c, "static") for c in cases))
    async with serve_config(STATIC_GATEWAY, tmp_path) as gw:
        ours = await send_all(gw.port, (raw(*c, "gw") for c in cases))
    mismatches, designed = [], 0
    for (target, headers, method), n, g in zip(cases, theirs, ours, strict=True):
        range_header = next((h[7:] for h in headers if h.startswith("Range: ")), None)
        expected = by_design(target, site, range_header) if method in ("GET", "HEAD") else None
        if expected is not None and static_answer(n)["status"] != expected:
            designed += 1
            if g.status != expected:
                mismatches.append(f"{method} {target!r} {headers}: gateway {g.status}, "
                                  f"documented {expected}")
            continue
        if static_answer(n) != static_answer(g):
            mismatches.append(f"{method} {target!r} {headers}:\n  nginx   {static_answer(n)}"
                              f"\n  gateway {static_answer(g)}")
    assert len(cases) > 150
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ " \
                           f"({designed} by design):\n" + "\n".join(mismatches[:30])


# --- the proxy_pass test --------------------------------------------------------------------

PROXY_LOCATIONS = [  # (gateway key, nginx location, proxy_pass path or None)
    ("/api/", "location /api/", "/v1/"),
    ("=/exact", "location = /exact", "/pong"),
    ("^~/raw/", "location ^~ /raw/", None),
    ("/files", "location /files", "/store"),
    ("/", "location /", "/root/"),
]
PROXY_TARGETS = ["/api/users", "//api//users/./x", "/api/a%20b/%2e%2e/c", "/api/x%3Fy%23z",
                 "/api/caf%C3%A9?q=1&r=%2F", "/api/%7Euser/[x]", "/api/a%2Fb", "/api",
                 "/api?x=1", "/exact", "/exact?x=1", "//exact", "/raw/a//b/../c?x=%zz",
                 "/raw/%2e%2e/x", "/raw/caf%C3%A9", "/files", "/files/x", "/filesx/y",
                 "/other/%22q%22", "/x%5Cy", "/", "/a/..", "/%41pi/users", "/api/x?",
                 "/raw/a%2Fb%252F", "/files/%3C%3E%5E%60%7B%7C%7D", "/x\\y", "/raw/a\\b|c"]


async def test_proxy_pass_sends_what_nginx_sends(tmp_path: Path) -> None:
    from tests.support.routing import echo_upstream

    async with echo_upstream() as up:
        def url(path: str | None) -> str:
            return f"http://127.0.0.1:{up}{path or ''}"

        blocks = "\n        ".join(f"{loc} {{ proxy_pass {url(p)}; }}"
                                   for _, loc, p in PROXY_LOCATIONS)
        server = f"""
    server {{
        listen 127.0.0.1:{{port}};
        server_name proxy;
        absolute_redirect off;
        {blocks}
    }}"""
        cfg = "\n".join(['[[extensions]]', 'type = "routing"',
                         "[extensions.config.regex_locations]",
                         *(f'"{key}" = {{ proxy_pass = "{url(p)}" }}'
                           for key, _, p in PROXY_LOCATIONS)])
        async with running_nginx(tmp_path / "nginx", server) as port:
            theirs = await send_all(port, (request(t, "proxy") for t in PROXY_TARGETS))
        async with serve_config(cfg, tmp_path) as gw:
            ours = await send_all(gw.port, (request(t, "proxy") for t in PROXY_TARGETS))

    def sent(r: RawResponse) -> str:
        if r.status == 200 and r.headers.get("x-upstream") == "echo":
            return "upstream got " + json.loads(r.body)["target"]
        return f"{r.status} {r.headers.get('location', '')}"

    def by_design(answer: str) -> str:
        # The upstream client escapes what RFC 3986 does not allow in a request target;
        # nginx passes it as it is (README, "Differences from the contract").
        return re.sub(r'[\[\]\\"<>^`{|}]', lambda m: f"%{ord(m[0]):02X}", answer)

    mismatches = [f"{t!r}: nginx {sent(n)!r}, gateway {sent(g)!r}"
                  for t, n, g in zip(PROXY_TARGETS, theirs, ours, strict=True)
                  if by_design(sent(n)) != sent(g)]
    assert not mismatches, "\n".join(mismatches)
