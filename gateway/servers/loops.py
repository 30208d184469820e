"""Event-loop choice: `auto` takes uvloop when it is importable, else the stdlib loop."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

from gateway.errors import BackendNotInstalled

ResolvedLoop = Literal["uvloop", "asyncio"]

# name -> (module that must be importable, pip package); the order is the `auto` cascade.
LOOPS: dict[str, tuple[str, str]] = {
    "uvloop": ("uvloop", "uvloop"),
    "asyncio": ("asyncio", ""),
}
AUTO_LOOP_ORDER: tuple[ResolvedLoop, ...] = ("uvloop", "asyncio")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_loop(name: str) -> ResolvedLoop:
    """`auto` -> the first importable loop; an explicit missing loop -> BackendNotInstalled."""
    name = str(name)
    if name == "auto":
        for candidate in AUTO_LOOP_ORDER:
            if _importable(LOOPS[candidate][0]):
                return candidate
        return "asyncio"
    if name == "uvloop":
        if not _importable("uvloop"):
            raise BackendNotInstalled("uvloop", "uvloop")
        return "uvloop"
    if name == "asyncio":
        return "asyncio"
    raise BackendNotInstalled(name, name)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A zero-argument factory for `asyncio.Runner(loop_factory=...)`."""
    if resolve_loop(name) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
