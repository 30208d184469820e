"""Latency and request-rate sparklines of one app."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from workbench import formatting as fmt


class AppSparklines(Vertical):
    """Two labelled sparklines (latency p50 and req/s) over the last minute of one app."""

    DEFAULT_CSS = """
    AppSparklines {
        height: 2;
        padding: 0 1;
    }
    AppSparklines > Horizontal {
        height: 1;
    }
    AppSparklines Label {
        width: 30;
        color: $text-muted;
    }
    AppSparklines Sparkline {
        width: 1fr;
    }
    AppSparklines #rate-line > .sparkline--max-color {
        color: $success;
    }
    AppSparklines #rate-line > .sparkline--min-color {
        color: $success 30%;
    }
    AppSparklines #latency-line > .sparkline--max-color {
        color: $warning;
    }
    AppSparklines #latency-line > .sparkline--min-color {
        color: $warning 30%;
    }
    """

    app_name: reactive[str | None] = reactive(None, init=False)
    """The app whose series are shown (the apps table's selection)."""
    latency: reactive[tuple[float, ...]] = reactive(tuple, init=False, always_update=True)
    """Median latency (ms) per tick, oldest first."""
    rate: reactive[tuple[float, ...]] = reactive(tuple, init=False, always_update=True)
    """Requests per second per tick, oldest first."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(id="latency-label")
            yield Sparkline([], id="latency-line")
        with Horizontal():
            yield Label(id="rate-label")
            yield Sparkline([], id="rate-line")

    def show(self, app_name: str | None, latency: Sequence[float], rate: Sequence[float]) -> None:
        self.app_name = app_name
        self.latency = tuple(latency)
        self.rate = tuple(rate)

    def watch_latency(self, latency: tuple[float, ...]) -> None:
        self.query_one("#latency-line", Sparkline).data = list(latency)
        last = latency[-1] if latency else None
        self.query_one("#latency-label", Label).update(
            f"{self._short_name()} p50 ms {fmt.millis(last):>7}")

    def watch_rate(self, rate: tuple[float, ...]) -> None:
        self.query_one("#rate-line", Sparkline).data = list(rate)
        last = rate[-1] if rate else None
        self.query_one("#rate-label", Label).update(f"{'':14} req/s  {fmt.rate(last):>7}")

    def _short_name(self) -> str:
        return (self.app_name or "-")[:14].ljust(14)
