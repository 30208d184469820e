"""Fixtures of the integration tests; the helpers they use live in `integration_support`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import free_port, free_port_range
from tests.support.integration import Project, WorkbenchFactory


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project folder with a free gateway port and a free app port range."""
    return Project(tmp_path, free_port(), free_port_range())


@pytest.fixture
def start_workbench() -> Iterator[WorkbenchFactory]:
    """Starts `pyserve-tui --no-ui` processes; afterwards kills what is left of them and
    fails the test if any process they ran was still alive."""
    factory = WorkbenchFactory()
    try:
        yield factory
    finally:
        factory.close()
