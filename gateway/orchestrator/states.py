"""The app lifecycle as data: states, allowed transitions and why each one happens.

Stdlib only. `AppSupervisor._transition` is the one place that changes a state; it checks
the move against `TRANSITIONS` and emits `AppStateChanged`.

    stopped ──start──▶ starting ──first good probe──▶ healthy ◀──▶ unhealthy
       ▲                  │  ▲                          │              │
       │               exit/timeout                   exit      retries failed
       │                  ▼  │                          ▼              ▼
       └────stop──── restarting ◀───────────────────────┴──────────────┘
                          │ streak > max_restart_count
                          ▼
                        failed ──start/restart──▶ starting

Every state can go to ``stopped`` (stop requested). ``healthy -> healthy`` is a rollover to a
new process (blue/green), so listeners learn the new pid and port.
"""

from __future__ import annotations

from enum import StrEnum


class AppState(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"


S = AppState

TRANSITIONS: dict[AppState, frozenset[AppState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.HEALTHY, S.RESTARTING, S.FAILED, S.STOPPED}),
    S.HEALTHY: frozenset({S.HEALTHY, S.UNHEALTHY, S.RESTARTING, S.STOPPED}),
    S.UNHEALTHY: frozenset({S.HEALTHY, S.RESTARTING, S.STOPPED}),
    S.RESTARTING: frozenset({S.STARTING, S.FAILED, S.STOPPED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED}),
}

#: States in which the app has a process that takes traffic.
SERVING = frozenset({S.HEALTHY, S.UNHEALTHY})
#: States in which a process is on its way; requests may wait for it (`hold_requests`).
PENDING = frozenset({S.STARTING, S.RESTARTING})
#: States with no process and nothing scheduled.
IDLE = frozenset({S.STOPPED, S.FAILED})


class InvalidTransition(RuntimeError):
    """A bug: some code asked for a move the table does not allow."""

    def __init__(self, app: str, old: AppState, new: AppState) -> None:
        super().__init__(f"app {app!r}: cannot go from {old} to {new}")
        self.old = old
        self.new = new


def check_transition(app: str, old: AppState, new: AppState) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(app, old, new)
