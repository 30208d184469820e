"""Fixtures of the workbench tests: a deterministic fake project for snapshots and a real
project with real app processes for behaviour (helpers live in tests/support/wb.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import free_port, free_port_range
from tests.support.wb import real_project_text


@pytest.fixture
def utc() -> Iterator[None]:
    """Request times render in local time; pin it so snapshots match anywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def shop_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, utc: None) -> Path:
    """The fake project's folder, named `shop` (the header shows it) and the cwd, so that
    config errors name `workbench.toml` rather than a temporary path."""
    folder = tmp_path / "shop"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def real_project(tmp_path: Path) -> Path:
    path = tmp_path / "workbench.toml"
    path.write_text(real_project_text(free_port(), free_port_range()), encoding="utf-8")
    return path
