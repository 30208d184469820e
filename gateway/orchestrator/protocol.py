"""What the workbench and an app process agree on: the child's spec, environment names, exit
codes, markers.

Both sides import this module, so it stays stdlib-only and free of side effects.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: JSON description of the app the child runs (`ChildSpec.to_json`; `process.spawn` sets it,
#: `runner.py` and `apploader.py` read it with `ChildSpec.from_json`).
SPEC_ENV = "PYSERVE_TUI_APP_SPEC"
#: The path prefix an app is mounted under with `strip_path` (absent when nothing is
#: stripped); app processes get it as root_path / SCRIPT_NAME too, `command` apps only here.
PREFIX_ENV = "PYSERVE_TUI_PREFIX"
#: File descriptor of the lifeline pipe's read end; EOF means the workbench is gone.
LIFELINE_ENV = "PYSERVE_TUI_LIFELINE_FD"

#: Exit code of a runner whose app could not be imported or built (sysexits EX_CONFIG).
EXIT_IMPORT_ERROR = 78
#: First words of the one line a runner prints on stderr when the app cannot be loaded.
IMPORT_ERROR_PREFIX = "pyserve-tui: cannot load app: "

#: A line written while serving a request starts with RID_START + request id + RID_END.
#: Control characters keep the marker out of anything an app prints on purpose.
RID_START = "\x02"
RID_END = "\x03"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The project's `[server]` settings an app's server takes; None: the server's default
    (`ServerConfig`'s, applied by the runner)."""

    event_loop: str | None = None
    http: str | None = None
    backlog: int | None = None
    keep_alive_timeout: float | None = None
    graceful_timeout: float | None = None

    def given(self) -> dict[str, Any]:
        """The settings that were set, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """Everything an app process is made from: the supervisor builds it, `process.spawn`
    passes it on as JSON (`SPEC_ENV`), the runner and the app loader read it back.

    Two processes made from specs that are equal but for the `port` are the same process
    (`without_port`): a configuration change that leaves the spec alone needs no new one.
    The mappings are never changed after construction.
    """

    app: str
    backend: str
    host: str
    port: int
    cwd: str
    app_path: str | None = None
    app_type: str | None = None
    factory: bool = False
    factory_args: Mapping[str, Any] = field(default_factory=dict)
    module_path: str | None = None
    sys_path: tuple[str, ...] = ()
    #: argv of a `command` app (then no app is loaded); $PORT is expanded by the runner.
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    #: The path prefix the gateway strips (told to the app as its root path); "" for none.
    prefix: str = ""
    server: ServerSettings = field(default_factory=ServerSettings)

    def without_port(self) -> ChildSpec:
        """The spec with the port zeroed: what two interchangeable processes share."""
        return dataclasses.replace(self, port=0)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildSpec:
        """The spec `to_json` wrote; ValueError when `text` is not one."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            data["server"] = ServerSettings(**(data.get("server") or {}))
            for name in ("sys_path", "command"):
                if data.get(name) is not None:
                    data[name] = tuple(str(part) for part in data[name])
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an app process spec: {exc}") from None


def split_request_id(line: str) -> tuple[str | None, str]:
    """``(request_id, line)`` with the marker removed; ``(None, line)`` when there is none."""
    if line.startswith(RID_START):
        end = line.find(RID_END, 1, 140)
        if end > 0:
            return line[1:end], line[end + 1:]
    return None, line
