"""Process orchestration: each app in its own supervised process group behind the gateway.

    Orchestrator ── AppSupervisor (one per app) ── AppProcess (one per process group)
                    states.py (lifecycle table), backoff.py (restart policy),
                    health.py (probes), ports.py, logs.py, reload.py (file watching)
    runner.py / apploader.py run inside the app process.

Names are imported lazily so that the app process (``python -m
gateway.orchestrator.runner``) does not pay for httpx, psutil and watchfiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.orchestrator.logs import LogLine
    from gateway.orchestrator.orchestrator import Orchestrator
    from gateway.orchestrator.states import AppState
    from gateway.orchestrator.supervisor import AppSupervisor

__all__ = ["AppState", "AppSupervisor", "LogLine", "Orchestrator"]

_WHERE = {
    "Orchestrator": "gateway.orchestrator.orchestrator",
    "AppSupervisor": "gateway.orchestrator.supervisor",
    "AppState": "gateway.orchestrator.states",
    "LogLine": "gateway.orchestrator.logs",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
