"""Restart policy: exponential backoff with a cap, a give-up limit and a healthy-reset.

Kept apart from the supervisor so the numbers can be read and tested on their own
(the shape of circus' flapping plugin). Times come from the caller, so tests need no clock.
"""

from __future__ import annotations

import random
import time


class BackoffPolicy:
    """Counts consecutive failures of one app and says how long to wait before the next try.

    The n-th consecutive restart waits ``base_delay * 2**(n-1)`` seconds (plus up to
    `jitter` of it), capped at `cap`. A failure after `max_restarts` consecutive restarts
    means give up. The streak resets once the app has been healthy for `reset_after`
    seconds, or when a person restarts it.
    """

    def __init__(self, base_delay: float, max_restarts: int, *, cap: float = 30.0,
                 reset_after: float = 60.0, jitter: float = 0.1) -> None:
        self.base_delay = base_delay
        self.max_restarts = max_restarts
        self.cap = cap
        self.reset_after = reset_after
        self.jitter = jitter
        self.streak = 0
        self._healthy_since: float | None = None

    def delay_for(self, n: int) -> float:
        """Seconds before the n-th consecutive restart (n >= 1), jitter included."""
        delay = min(self.cap, self.base_delay * 2 ** (n - 1))
        if self.jitter and delay > 0:
            delay = min(self.cap, delay * (1.0 + random.uniform(0.0, self.jitter)))
        return delay

    def healthy(self, now: float | None = None) -> None:
        """The app became healthy (the clock for the streak reset starts now)."""
        self._healthy_since = time.monotonic() if now is None else now

    def unhealthy(self) -> None:
        """The app stopped being healthy without failing (e.g. it was stopped)."""
        self._healthy_since = None

    def failure(self, now: float | None = None) -> float | None:
        """Record a failure; the delay before restarting, or None to give up."""
        now = time.monotonic() if now is None else now
        if self._healthy_since is not None and now - self._healthy_since >= self.reset_after:
            self.streak = 0
        self._healthy_since = None
        if self.streak >= self.max_restarts:
            return None
        self.streak += 1
        return self.delay_for(self.streak)

    def reset(self) -> None:
        self.streak = 0
        self._healthy_since = None

    def __repr__(self) -> str:
        return (f"<BackoffPolicy streak={self.streak}/{self.max_restarts} "
                f"base={self.base_delay}s cap={self.cap}s>")
