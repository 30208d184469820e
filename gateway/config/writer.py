"""Write the project file back: through tomlkit (comments, order, formatting kept), atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomlkit


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def set_value(path: Path, keys: Sequence[str], value: Any) -> str:
    """Set ``keys`` (e.g. ``["server", "backend"]``) to `value`, keeping everything else.

    Returns the new text. The write is atomic.
    """
    path = Path(path)
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    table: Any = doc
    for key in keys[:-1]:
        if key not in table:
            table[key] = tomlkit.table()
        table = table[key]
    table[keys[-1]] = value
    text = tomlkit.dumps(doc)
    write_atomic(path, text)
    return text
