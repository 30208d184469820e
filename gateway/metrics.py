"""Counters and bounded latency histograms behind `/metrics`.

Latencies go into fixed log-spaced buckets (constant memory however many requests), from
which p50/p90/p99 are read with in-bucket interpolation; good to a few percent.
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

_STATUS_CLASS = [f"{n}xx" for n in range(10)]


def _status_class(status: int) -> str:
    return _STATUS_CLASS[status // 100] if 0 <= status < 1000 else f"{status // 100}xx"


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

    def observe_many(self, values: list[float]) -> None:
        counts = self.counts
        find = bisect.bisect_left
        for ms in values:
            counts[find(_BOUNDS, ms)] += 1
        self.total += len(values)
        self.sum_ms += math.fsum(values)

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
        key = _status_class(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1
        self.latency.observe(ms)

    def record_many(self, statuses: list[int], latencies: list[float]) -> None:
        """`record` for a batch of requests (one status and one latency each)."""
        self.requests += len(statuses)
        by_status = self.by_status
        for status, n in collections.Counter(statuses).items():
            if status >= 500 or status == 0:
                self.errors += n
            key = _status_class(status)
            by_status[key] = by_status.get(key, 0) + n
        self.latency.observe_many(latencies)


class RateMeter:
    """Requests per second over the last few seconds, from per-second slots."""

    __slots__ = ("_slots", "_window")

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._slots: dict[int, int] = {}

    def mark(self, now: float | None = None, count: int = 1) -> None:
        sec = int(now if now is not None else time.monotonic())
        self._slots[sec] = self._slots.get(sec, 0) + count
        if len(self._slots) > self._window + 2:
            for k in sorted(self._slots)[: -self._window - 1]:
                del self._slots[k]

    def rate(self, now: float | None = None) -> float:
        sec = int(now if now is not None else time.monotonic())
        full = [self._slots.get(s, 0) for s in range(sec - self._window, sec)]
        return sum(full) / self._window


#: Finished requests are counted in batches of at most this many (see MetricsRegistry).
BATCH = 256


class MetricsRegistry:
    """Gateway-wide and per-app counters, fed once per finished request.

    `record` only appends the request's (app, status, latency) to a short list; the counters,
    histograms and rates take them in a batch when the list is full or when anything reads
    them (`gateway`, `apps`, the rates), so `/metrics` is always exact and the per-request
    path does one append instead of a dozen updates.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._gateway = Counter()
        self._gateway_rate = RateMeter()
        self._apps: dict[str, Counter] = {}
        self._app_rates: dict[str, RateMeter] = {}
        self._pending: list[tuple[str | None, int, float]] = []

    def record(self, app: str | None, status: int, ms: float) -> None:
        pending = self._pending
        pending.append((app, status, ms))
        if len(pending) >= BATCH:
            self.fold()

    def fold(self) -> None:
        """Count the requests recorded since the last fold."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        now = time.monotonic()
        apps, statuses, latencies = zip(*pending, strict=True)
        self._gateway.record_many(list(statuses), list(latencies))
        self._gateway_rate.mark(now, len(pending))
        named = set(apps)
        named.discard(None)
        for app in named:
            assert app is not None
            mine = [(status, ms) for who, status, ms in pending if who == app]
            counter = self._apps.get(app)
            if counter is None:
                counter = self._apps[app] = Counter()
                self._app_rates[app] = RateMeter()
            counter.record_many([s for s, _ in mine], [ms for _, ms in mine])
            self._app_rates[app].mark(now, len(mine))

    @property
    def gateway(self) -> Counter:
        self.fold()
        return self._gateway

    @property
    def gateway_rate(self) -> RateMeter:
        self.fold()
        return self._gateway_rate

    @property
    def apps(self) -> dict[str, Counter]:
        self.fold()
        return self._apps

    @property
    def app_rates(self) -> dict[str, RateMeter]:
        self.fold()
        return self._app_rates

    def forget(self, apps: Iterable[str]) -> None:
        """Drop the counters of apps that are gone (removed from the project file)."""
        self.fold()
        for app in apps:
            self._apps.pop(app, None)
            self._app_rates.pop(app, None)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def __repr__(self) -> str:
        return (f"<MetricsRegistry requests={self.gateway.requests} "
                f"apps={sorted(self._apps)} pending={len(self._pending)}>")
