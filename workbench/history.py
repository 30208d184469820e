"""Per-app history of latency and request rate, one sample per metrics tick (for sparklines).

Latency is the median of the requests that finished since the previous tick, not the
all-time percentile from `/metrics`, so the line moves when an app slows down now.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from collections.abc import Iterable

from gateway.requestlog import RequestRecord
from gateway.snapshots import MetricsSnapshot


class MetricsHistory:
    """Bounded sample series per app: `latency[app]` (ms) and `rate[app]` (req/s)."""

    def __init__(self, size: int = 60) -> None:
        self.size = size
        self.latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=size))
        self.rate: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=size))
        self._pending: dict[str, list[float]] = defaultdict(list)

    def observe(self, records: Iterable[RequestRecord]) -> None:
        """Remember the latencies of finished requests until the next tick."""
        for rec in records:
            if rec.app is not None:
                bucket = self._pending[rec.app]
                if len(bucket) < 10000:
                    bucket.append(rec.latency_ms)

    def tick(self, metrics: MetricsSnapshot) -> None:
        """Close the current interval: one sample per app known to the metrics snapshot."""
        for name, entry in metrics.apps.items():
            latencies = self._pending.pop(name, [])
            self.latency[name].append(statistics.median(latencies) if latencies else 0.0)
            self.rate[name].append(float(entry.requests_per_s or 0.0))
        self._pending.clear()

    def seed(self, app: str, latency: Iterable[float], rate: Iterable[float]) -> None:
        """Replace an app's series (screenshots and tests start from known data)."""
        self.latency[app] = deque(latency, maxlen=self.size)
        self.rate[app] = deque(rate, maxlen=self.size)

    def series(self, app: str) -> tuple[list[float], list[float]]:
        """(latency, rate) of `app`, left-padded with zeros to the full window."""
        lat = list(self.latency.get(app, ()))
        rps = list(self.rate.get(app, ()))
        return ([0.0] * (self.size - len(lat)) + lat, [0.0] * (self.size - len(rps)) + rps)

    def __repr__(self) -> str:
        return f"<MetricsHistory apps={sorted(self.rate)} size={self.size}>"
