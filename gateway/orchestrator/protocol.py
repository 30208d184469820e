"""What the workbench and an app process agree on: environment names, exit codes, markers.

Both sides import this module, so it stays stdlib-only and free of side effects.
"""

from __future__ import annotations

#: JSON description of the app the child runs (`process.spawn` sets it, `runner.py` reads it).
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


def split_request_id(line: str) -> tuple[str | None, str]:
    """``(request_id, line)`` with the marker removed; ``(None, line)`` when there is none."""
    if line.startswith(RID_START):
        end = line.find(RID_END, 1, 140)
        if end > 0:
            return line[1:end], line[end + 1:]
    return None, line
