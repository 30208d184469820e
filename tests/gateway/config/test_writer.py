"""Writes keep comments and order, and are atomic."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config.writer import set_value, write_atomic

TEXT = """\
# top comment
[server]
host = "127.0.0.1"  # loopback
backend = "auto"    # which server

[logging]
level = "info"
"""


def test_set_value_keeps_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "workbench.toml"
    path.write_text(TEXT)
    set_value(path, ["server", "backend"], "uvicorn")
    text = path.read_text()
    assert 'backend = "uvicorn"' in text
    assert text.splitlines()[:3] == TEXT.splitlines()[:3]
    assert text.splitlines()[4:] == TEXT.splitlines()[4:]
    assert "# which server" in text and "# top comment" in text


def test_write_atomic_leaves_no_temp_files_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "workbench.toml"
    path.write_text(TEXT)
    os.chmod(path, 0o640)
    write_atomic(path, "x = 1\n")
    assert path.read_text() == "x = 1\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir()] == ["workbench.toml"]
