"""Fixtures for extension tests that serve a real gateway (see ext_upstream.gateway)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support import harness


class _NoTransport:
    """Stands in while gateway.proxy.transport is absent: these tests never proxy."""

    async def aclose(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _served_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        present = importlib.util.find_spec("gateway.proxy.transport") is not None
    except ModuleNotFoundError:
        present = False
    if not present:
        monkeypatch.setattr(harness, "_transport", _NoTransport)
