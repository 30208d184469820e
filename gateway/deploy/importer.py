"""``pyserve-tui import``: a pyserve YAML config or a Procfile as a commented workbench.toml.

The pyserve format (``server:`` / ``extensions:``) is ours with YAML syntax, so sections and
extension configs carry over key by key; a key or extension we do not have is left out and
listed. The result is validated with the same loader as ``check``: a value the schema
refuses is removed (and listed) rather than written, so what is written always passes.

A Procfile's processes become ``command`` apps under ``/<name>``, each given ``$PORT`` as
foreman and honcho do; a command that needs a shell runs under ``sh -c``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import yaml

from gateway.config.loader import validate_text
from gateway.config.schema import BUILTIN_OPTIONS, LoggingConfig, ServerConfig
from gateway.errors import ConfigError

_PROC_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
_SHELL = re.compile(r"[|&;<>()`*?~]|\$(?!\{?PORT\b)")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

_ABOUT = {
    "security": "IP filtering and security headers; refused clients get 403 first.",
    "routing": "nginx-style locations: =exact, ^~prefix, ~regex, ~*regex, /prefix, "
               "__default__.",
    "process_orchestration": "Every app runs in its own process, health-checked and "
                             "restarted.",
    "asgi": "Apps mounted inside the gateway process.",
    "caching": "A shared response cache (GET/HEAD 200s).",
    "monitoring": "Request metrics, served at /metrics.",
    "cors": "Cross-origin resource sharing, answered at the gateway.",
    "rate_limit": "Token bucket per client address; 429 with Retry-After.",
    "compression": "gzip (brotli, zstd when installed) above minimum_size.",
    "auth": "Authentication in front of everything after it.",
}


@dataclass
class ImportResult:
    kind: str
    text: str
    dropped: list[str] = field(default_factory=list)


def import_file(source: Path, target: Path) -> ImportResult:
    """Read `source` and build the project file meant to be written at `target`."""
    try:
        raw = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", path=str(source)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(source)) from None
    data: Any = None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if not _looks_like_procfile(raw):
            raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}",
                              path=str(source), line=mark.line + 1 if mark else 0,
                              col=mark.column + 1 if mark else 0) from None
    if isinstance(data, dict) and ("extensions" in data or isinstance(data.get("server"), dict)):
        doc, dropped = _from_pyserve(data, source)
        kind = "pyserve YAML config"
    elif _looks_like_procfile(raw):
        doc, dropped = _from_procfile(raw, source)
        kind = "Procfile"
    else:
        raise ConfigError("neither a pyserve YAML config (server:/extensions:) nor a "
                          "Procfile (name: command lines)", path=str(source))
    text = _validated(doc, target, dropped)
    return ImportResult(kind, text, dropped)


# --- pyserve YAML ------------------------------------------------------------------------------

def _known(cls: type) -> set[str]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {"return" if n == "return_" else n for n in names}


def _copy_known(src: dict, cls: type, where: str, dropped: list[str]) -> dict:
    known = _known(cls)
    out = {}
    for key, value in src.items():
        if key in known:
            out[key] = value
        else:
            dropped.append(f"{where}.{key} = {value!r}: no such setting here")
    return out


def _nested(options_cls: type, key: str) -> type | None:
    """The dataclass a list/table key holds (apps -> AppConfig), if any."""
    import typing

    hint = typing.get_type_hints(options_cls).get(key)
    for arg in (typing.get_args(hint) or (hint,)):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
        for inner in typing.get_args(arg):
            if dataclasses.is_dataclass(inner):
                return inner  # type: ignore[return-value]
    return None


def _extension_config(type_: str, config: dict, where: str, dropped: list[str]) -> dict:
    cls = BUILTIN_OPTIONS.get(type_)
    if cls is None:
        return dict(config)
    out = _copy_known(config, cls, where, dropped)
    for key, value in list(out.items()):
        inner = _nested(cls, key)
        if inner is None:
            continue
        if isinstance(value, list):
            out[key] = [_copy_known(v, inner, f"{where}.{key}[{i}]", dropped)
                        if isinstance(v, dict) else v for i, v in enumerate(value)]
        elif isinstance(value, dict) and key != "regex_locations":
            out[key] = _copy_known(value, inner, f"{where}.{key}", dropped)
        elif key == "regex_locations" and isinstance(value, dict):
            out[key] = {p: _copy_known(a, inner, f"{where}.regex_locations.{p!r}", dropped)
                        if isinstance(a, dict) else a for p, a in value.items()}
    return out


def _from_pyserve(data: dict, source: Path) -> tuple[tomlkit.TOMLDocument, list[str]]:
    dropped: list[str] = []
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Imported from {source.name} by `pyserve-tui import`."))
    doc.add(tomlkit.comment("Check it with `pyserve-tui check`, run it with `pyserve-tui`."))
    for key in data:
        if key not in ("server", "logging", "extensions"):
            dropped.append(f"section {key!r}: the workbench has no such section")
    server = data.get("server") or {}
    if isinstance(server, dict) and server:
        table = tomlkit.table()
        for k, v in _copy_known(server, ServerConfig, "server", dropped).items():
            table.add(k, v)
        doc.add(tomlkit.nl())
        doc.add("server", table)
    logging_cfg = data.get("logging") or {}
    if isinstance(logging_cfg, dict) and logging_cfg:
        kept = _copy_known(logging_cfg, LoggingConfig, "logging", dropped)
        if isinstance(kept.get("level"), str):
            kept["level"] = kept["level"].lower()
        if kept:
            table = tomlkit.table()
            for k, v in kept.items():
                table.add(k, v)
            doc.add(tomlkit.nl())
            doc.add("logging", table)
    exts = data.get("extensions") or []
    if not isinstance(exts, list):
        dropped.append("extensions: not a list")
        exts = []
    aot = tomlkit.aot()
    seen: set[str] = set()
    for i, ext in enumerate(exts):
        if not isinstance(ext, dict) or not isinstance(ext.get("type"), str):
            dropped.append(f"extensions[{i}]: not a table with a type")
            continue
        type_ = ext["type"]
        if type_ in seen and type_ in BUILTIN_OPTIONS:
            dropped.append(f"extensions[{i}] ({type_}): declared twice; the first is kept")
            continue
        seen.add(type_)
        table = tomlkit.table()
        table.add("type", type_)
        if type_ in _ABOUT:
            table["type"].comment(_ABOUT[type_])
        config = ext.get("config") or {}
        if isinstance(config, dict) and config:
            config = _extension_config(type_, config, f"extensions[{i}].config", dropped)
            if type_ == "asgi":
                _mounts_import_from_here(config)
            table.add("config", config)
        aot.append(table)
    if len(aot):
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("Extensions run in this order; the first that answers wins."))
        doc.add("extensions", aot)
    return doc, dropped


def _mounts_import_from_here(config: dict) -> None:
    """pyserve imports mounts from the folder it runs in; here that is said explicitly
    (an in-process mount imports from its module_path, the app processes from the
    project folder)."""
    for mount in config.get("mounts") or []:
        if isinstance(mount, dict) and "module_path" not in mount:
            mount["module_path"] = "."


# --- Procfile -----------------------------------------------------------------------------------

def _looks_like_procfile(raw: str) -> bool:
    lines = [ln for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and all(_PROC_LINE.match(ln) for ln in lines)


def _from_procfile(raw: str, source: Path) -> tuple[tomlkit.TOMLDocument, list[str]]:
    dropped: list[str] = []
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Imported from {source.name} by `pyserve-tui import`: each process "
                            "is an app under /<name>,"))
    doc.add(tomlkit.comment("given its port in $PORT; healthy when /health answers below 500 "
                            "(set health_check_path for a strict check)."))
    doc.add(tomlkit.comment("Check it with `pyserve-tui check`."))
    doc.add(tomlkit.nl())
    orch = tomlkit.table()
    orch.add("type", "process_orchestration")
    config = tomlkit.table()
    config.add("port_range", [9000, 9999])
    apps = tomlkit.aot()
    names: set[str] = set()
    for line in raw.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _PROC_LINE.match(line)
        assert m is not None  # _looks_like_procfile checked every line
        name, command = m[1], m[2].strip()
        if name == "release":
            dropped.append(f"process {name!r}: a release phase runs once per deploy, not as "
                           "a server; run it yourself")
            continue
        if name in names:
            dropped.append(f"process {name!r}: listed twice; the first is kept")
            continue
        names.add(name)
        app = tomlkit.table()
        app.add("name", name)
        app.add("path", f"/{name}")
        env, argv = _split_command(command)
        app.add("command", argv)
        if env:
            app.add("env", env)
        app["command"].comment(f"from: {command}"[:200])
        apps.append(app)
        if name != "web":
            dropped.append(f"process {name!r}: is given $PORT and a health check like a web "
                           "process; one that does not answer HTTP there never turns healthy "
                           "(remove it, or run it beside the workbench)")
    config.add("apps", apps)
    orch.add("config", config)
    exts = tomlkit.aot()
    exts.append(orch)
    doc.add("extensions", exts)
    return doc, dropped


def _split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """Leading VAR=value words become env; a command needing a shell runs under sh -c."""
    try:
        words = shlex.split(command)
    except ValueError:
        return {}, ["sh", "-c", command]
    env: dict[str, str] = {}
    while words and _ENV_ASSIGN.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    rest = command
    for _ in env:
        rest = rest.split(None, 1)[1] if len(rest.split(None, 1)) > 1 else ""
    if not words or _SHELL.search(rest):
        return env, ["sh", "-c", rest or command]
    return env, words


# --- validation ---------------------------------------------------------------------------------

def _validated(doc: tomlkit.TOMLDocument, target: Path, dropped: list[str]) -> str:
    """The document's text once it passes `check`; offending keys are removed and listed."""
    for _ in range(100):
        text = tomlkit.dumps(doc)
        try:
            validate_text(target, text, environ={})
            return text
        except ConfigError as exc:
            if not exc.where or not _remove(doc, exc.where):
                raise ConfigError(f"the imported project is not valid: {exc.message}",
                                  path=str(target), where=exc.where) from None
            dropped.append(f"{exc.where}: {exc.message}")
    raise ConfigError("the imported project is not valid", path=str(target))


def _remove(doc: Any, where: str) -> bool:
    """Delete the key (or list item) at a loader path like ``extensions[1].config.apps[0]``."""
    from gateway.config.loader import _split_where

    parts = list(_split_where(where))
    if not parts:
        return False
    node = doc
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    last = parts[-1]
    try:
        del node[last]
    except (KeyError, IndexError, TypeError):
        return False
    return True
