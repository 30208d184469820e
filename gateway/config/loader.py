"""Load and validate the project file into `ProjectConfig`.

Every problem becomes one `ConfigError` naming ``file:line:col``, the key path and what is
wrong; nothing here lets a traceback reach the user.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import tomlkit
from tomlkit.exceptions import ParseError

from gateway.config.locate import Locations, PathKey
from gateway.config.schema import (
    BUILTIN_OPTIONS,
    REPEATABLE,
    ExtensionConfig,
    LoggingConfig,
    ProjectConfig,
    ServerConfig,
)
from gateway.errors import ConfigError

ENV_OVERRIDES = {
    "host": "PYSERVE_TUI_HOST",
    "port": "PYSERVE_TUI_PORT",
    "backend": "PYSERVE_TUI_BACKEND",
}

# TOML keys that are Python keywords map onto a trailing-underscore field.
_KEY_ALIASES = {"return": "return_"}
_FIELD_ALIASES = {v: k for k, v in _KEY_ALIASES.items()}


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}" if part.replace("_", "").replace("-", "").isalnum() else f".{part!r}"
        else:
            out = str(part)
    return out


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.display = str(path)
        self._text = text
        self._locations: Locations | None = None

    def error(self, where: PathKey, message: str) -> ConfigError:
        if self._locations is None:
            self._locations = Locations(self._text)
        line, col = self._locations.find(where)
        return ConfigError(message, path=self.display, line=line, col=col,
                           where=format_path(where))

    def convert(self, value: Any, hint: Any, where: PathKey) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (types.UnionType, typing.Union):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.convert(value, inner[0], where)
        if hint is Any:
            return value
        if origin is Literal:
            if value not in args:
                raise self.error(where, f"must be one of {', '.join(map(repr, args))}, "
                                        f"not {value!r}")
            return value
        if isinstance(hint, type) and issubclass(hint, Enum):
            try:
                return hint(value)
            except ValueError:
                choices = ", ".join(repr(m.value) for m in hint)  # type: ignore[attr-defined]
                raise self.error(where, f"must be one of {choices}, not {value!r}") from None
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, where)
        if origin is list:
            if not isinstance(value, list):
                raise self.error(where, f"must be an array, not {_kind(value)}")
            return [self.convert(v, args[0], where + (i,)) for i, v in enumerate(value)]
        if origin is tuple:
            if not isinstance(value, list) or len(value) != len(args):
                raise self.error(where, f"must be an array of {len(args)} values")
            return tuple(self.convert(v, a, where + (i,)) for i, (v, a) in
                         enumerate(zip(value, args, strict=True)))
        if origin is dict:
            if not isinstance(value, Mapping):
                raise self.error(where, f"must be a table, not {_kind(value)}")
            return {str(k): self.convert(v, args[1], where + (str(k),))
                    for k, v in value.items()}
        if hint is bool:
            if not isinstance(value, bool):
                raise self.error(where, f"must be true or false, not {_kind(value)}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(where, f"must be an integer, not {_kind(value)}")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(where, f"must be a number, not {_kind(value)}")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise self.error(where, f"must be a string, not {_kind(value)}")
            return value
        raise TypeError(f"unsupported annotation {hint!r}")  # a bug in schema.py, not user input

    def build(self, cls: Any, raw: Any, where: PathKey) -> Any:
        if not isinstance(raw, Mapping):
            raise self.error(where, f"must be a table, not {_kind(raw)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in raw.items():
            name = _KEY_ALIASES.get(key, key)
            if name not in fields:
                known = ", ".join(_FIELD_ALIASES.get(f, f) for f in fields)
                raise self.error(where + (key,), f"unknown key {key!r} (known keys: {known})")
            kwargs[name] = self.convert(value, hints[name], where + (key,))
        for name, f in fields.items():
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            if required and name not in kwargs:
                raise self.error(where, f"{_FIELD_ALIASES.get(name, name)!r} is required")
        obj = cls(**kwargs)
        check = getattr(obj, "validate", None)
        if check is not None:
            for key, message in check():
                sub = _split_where(key)
                raise self.error(where + sub, message)
        return obj


def _split_where(key: str) -> PathKey:
    """'apps[1].depends_on' -> ('apps', 1, 'depends_on')."""
    if not key:
        return ()
    out: list[str | int] = []
    for part in key.replace("]", "").split("."):
        if part.startswith("'") and part.endswith("'"):
            out.append(part[1:-1])
            continue
        name, *idx = part.split("[")
        if name:
            out.append(_FIELD_ALIASES.get(name, name))
        out.extend(int(i) for i in idx)
    return tuple(out)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def parse_document(display: str, text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        msg = str(exc).split(" at line ")[0]
        raise ConfigError(f"invalid TOML: {msg}", path=display, line=exc.line,
                          col=exc.col) from None


def validate_text(path: Path, text: str, *, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None,
                  plugin_options: Mapping[str, type] | None = None) -> ProjectConfig:
    """Validate project-file text. `overrides` are command-line values for [server]."""
    v = _Validator(path, text)  # messages name the file as the user gave it
    path = path.resolve()
    doc = parse_document(v.display, text).unwrap()
    known_top = {"server", "logging", "extensions"}
    for key in doc:
        if key not in known_top:
            raise v.error((key,), f"unknown section {key!r} (known: server, logging, extensions)")

    server_raw = dict(doc.get("server", {}))
    env = os.environ if environ is None else environ
    env_values: dict[str, Any] = {}
    for key, var in ENV_OVERRIDES.items():
        if env.get(var):
            env_values[key] = int(env[var]) if key == "port" and env[var].isdigit() else env[var]
    server_raw.update(env_values)
    server_raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    server = v.build(ServerConfig, server_raw, ("server",))
    logging_cfg = v.build(LoggingConfig, doc.get("logging", {}), ("logging",))

    raw_exts = doc.get("extensions", [])
    if not isinstance(raw_exts, list):
        raise v.error(("extensions",), "must be an array of tables ([[extensions]])")
    from gateway.extensions.registry import known_extension_types, plugin_options_class

    extensions: list[ExtensionConfig] = []
    for i, raw in enumerate(raw_exts):
        where: PathKey = ("extensions", i)
        if not isinstance(raw, Mapping):
            raise v.error(where, "must be a table")
        unknown = set(raw) - {"type", "config"}
        if unknown:
            raise v.error(where + (sorted(unknown)[0],),
                          f"unknown key {sorted(unknown)[0]!r} (known keys: type, config)")
        type_ = raw.get("type")
        if not isinstance(type_, str):
            raise v.error(where, "'type' is required")
        options_cls = BUILTIN_OPTIONS.get(type_)
        if options_cls is None and plugin_options is not None:
            options_cls = plugin_options.get(type_)
        if options_cls is None:
            try:
                options_cls = plugin_options_class(type_)
            except LookupError:
                known = ", ".join(known_extension_types())
                raise v.error(where + ("type",),
                              f"unknown extension type {type_!r} (known: {known})") from None
        if type_ in {e.type for e in extensions} and type_ in BUILTIN_OPTIONS \
                and type_ not in REPEATABLE:
            raise v.error(where + ("type",), f"extension {type_!r} is declared twice")
        if options_cls is dict:  # a plugin without an Options dataclass takes any table
            options = dict(raw.get("config", {}))
        else:
            options = v.build(options_cls, raw.get("config", {}), where + ("config",))
        line = v.error(where, "").line
        extensions.append(ExtensionConfig(type=type_, options=options, index=i, line=line))
    _check_unique_paths(v, extensions)
    project = ProjectConfig(path=path, server=server, logging=logging_cfg,
                            extensions=tuple(extensions), text=text)
    for ext in extensions:
        # Rules that need the whole project: files relative to its folder, other entries.
        check_in = getattr(ext.options, "validate_in", None)
        if check_in is not None:
            for key, message in check_in(project):
                raise v.error(("extensions", ext.index, "config") + _split_where(key), message)
    return project


def _check_unique_paths(v: _Validator, extensions: list[ExtensionConfig]) -> None:
    """Two apps (or an app and an in-process mount) on one `path` would leave one of them
    unreachable, whichever wins: refused like any other error, at the second one."""
    seen: dict[str, tuple[str, PathKey]] = {}
    for ext in extensions:
        if ext.type == "process_orchestration":
            entries = [(f"app {a.name!r}", "apps", j, a.path)
                       for j, a in enumerate(ext.options.apps)]
        elif ext.type == "asgi":
            entries = [(f"mount {m.name or m.path!r}", "mounts", j, m.path)
                       for j, m in enumerate(ext.options.mounts)]
        else:
            continue
        for label, key, j, raw in entries:
            where: PathKey = ("extensions", ext.index, "config", key, j, "path")
            path = raw.rstrip("/") or "/"
            if path in seen:
                other, other_where = seen[path]
                raise v.error(where, f"{raw!r} is already the path of {other} "
                                     f"({format_path(other_where)})")
            seen[path] = (label, where[:-1])


def load_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> ProjectConfig:
    """Read and validate the project file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file (create one with: pyserve-tui init)",
                          path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(p)) from None
    return validate_text(p, text, overrides=overrides, environ=environ)
