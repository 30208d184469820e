"""Fixtures for extension tests that serve a real gateway (see ext_upstream.gateway)."""

from __future__ import annotations

import importlib.util

import harness
import pytest


class _NoTransport:
    """Stands in while gateway.proxy.transport is absent: these tests never proxy."""

    async def aclose(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _served_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default and would rewrite
    # scope["client"] before the gateway sees it; these tests check the gateway's own logic.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")
    try:
        present = importlib.util.find_spec("gateway.proxy.transport") is not None
    except ModuleNotFoundError:
        present = False
    if not present:
        monkeypatch.setattr(harness, "_transport", _NoTransport)
