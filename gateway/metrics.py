"""Counters and bounded latency histograms behind `/metrics`.

Latencies go into fixed log-spaced buckets (constant memory however many requests), from
which p50/p90/p99 are read with in-bucket interpolation; good to a few percent.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

# 0.05 ms .. ~60 s, 12 buckets per decade.
_BOUNDS = [0.05 * 10 ** (i / 12) for i in range(0, 74)]


class LatencyHistogram:
    __slots__ = ("counts", "total", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.total = 0
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(_BOUNDS, ms)] += 1
        self.total += 1
        self.sum_ms += ms

    def quantile(self, q: float) -> float:
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                lo = _BOUNDS[i - 1] if i else 0.0
                hi = _BOUNDS[i] if i < len(_BOUNDS) else _BOUNDS[-1] * 2
                frac = (rank - seen) / c
                return round(lo + (hi - lo) * frac, 3)
            seen += c
        return round(_BOUNDS[-1], 3)

    def summary(self) -> dict[str, float]:
        return {"p50": self.quantile(0.5), "p90": self.quantile(0.9), "p99": self.quantile(0.99)}

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative (upper bound in ms, count) pairs, Prometheus style."""
        out, acc = [], 0
        for bound, c in zip(_BOUNDS + [math.inf], self.counts, strict=True):
            acc += c
            out.append((bound, acc))
        return out


@dataclass
class Counter:
    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    by_status: dict[str, int] = field(default_factory=dict)

    def record(self, status: int, ms: float) -> None:
        self.requests += 1
        if status >= 500 or status == 0:
            self.errors += 1
        key = f"{status // 100}xx"
        self.by_status[key] = self.by_status.get(key, 0) + 1
        self.latency.observe(ms)


class RateMeter:
    """Requests per second over the last few seconds, from per-second slots."""

    __slots__ = ("_slots", "_window")

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._slots: dict[int, int] = {}

    def mark(self, now: float | None = None) -> None:
        sec = int(now if now is not None else time.monotonic())
        self._slots[sec] = self._slots.get(sec, 0) + 1
        if len(self._slots) > self._window + 2:
            for k in sorted(self._slots)[: -self._window - 1]:
                del self._slots[k]

    def rate(self, now: float | None = None) -> float:
        sec = int(now if now is not None else time.monotonic())
        full = [self._slots.get(s, 0) for s in range(sec - self._window, sec)]
        return sum(full) / self._window


class MetricsRegistry:
    """Gateway-wide and per-app counters, fed once per finished request."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.gateway = Counter()
        self.gateway_rate = RateMeter()
        self.apps: dict[str, Counter] = {}
        self.app_rates: dict[str, RateMeter] = {}

    def record(self, app: str | None, status: int, ms: float) -> None:
        self.gateway.record(status, ms)
        self.gateway_rate.mark()
        if app is not None:
            counter = self.apps.get(app)
            if counter is None:
                counter = self.apps[app] = Counter()
                self.app_rates[app] = RateMeter()
            counter.record(status, ms)
            self.app_rates[app].mark()

    def forget(self, apps: Iterable[str]) -> None:
        """Drop the counters of apps that are gone (removed from the project file)."""
        for app in apps:
            self.apps.pop(app, None)
            self.app_rates.pop(app, None)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def __repr__(self) -> str:
        return f"<MetricsRegistry requests={self.gateway.requests} apps={sorted(self.apps)}>"
