"""Turning engine numbers into short, coloured cells.

The palette uses mid-tone colours with an explicit foreground on every badge, so the same
cells read on dark and light themes alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text

if TYPE_CHECKING:
    from gateway.snapshots import AppMetrics

#: state -> (background, foreground) of its badge.
STATE_BADGES: dict[str, tuple[str, str]] = {
    "healthy": ("#2e9e4f", "#ffffff"),
    "starting": ("#2a7fd4", "#ffffff"),
    "restarting": ("#d9822b", "#000000"),
    "unhealthy": ("#e0b000", "#000000"),
    "stopped": ("#7a7a7a", "#ffffff"),
    "failed": ("#c83737", "#ffffff"),
    "mounted": ("#6c5fc7", "#ffffff"),
}

#: status class -> foreground colour.
STATUS_COLOURS: dict[int, str] = {1: "#7a7a7a", 2: "#2e9e4f", 3: "#2a7fd4", 4: "#d9822b",
                                  5: "#c83737"}

STATUS_CLASSES: tuple[str, ...] = ("2xx", "3xx", "4xx", "5xx")


def state_badge(state: str | None) -> Text:
    """A state as a coloured badge: `` healthy ``."""
    name = state or "unknown"
    bg, fg = STATE_BADGES.get(name, ("#7a7a7a", "#ffffff"))
    return Text(f" {name} ", style=f"bold {fg} on {bg}")


def status_text(status: int) -> Text:
    """An HTTP status coloured by its class; 0 (no response) shows as ``---``."""
    if not status:
        return Text("---", style="bold #c83737")
    return Text(str(status), style=f"bold {STATUS_COLOURS.get(status // 100, '')}")


def health_text(health: Any) -> Text:
    """The orchestrator's health field, whatever shape it has (bool, str, dict, None)."""
    if isinstance(health, dict):
        health = health.get("status", health.get("ok"))
    if health is None or health == "":
        return Text("-", style="dim")
    if isinstance(health, bool):
        health = "ok" if health else "failing"
    value = str(health)
    good = value in ("ok", "healthy", "passing", "up")
    bad = value in ("failing", "unhealthy", "down", "timeout", "error")
    style = "#2e9e4f" if good else "#c83737" if bad else ""
    return Text(value, style=style)


#: Longest cause shown in a table cell; the whole text is in the app's summary line.
CAUSE_WIDTH = 40


def health_cell(health: Any, rule: str | None) -> Text:
    """The health column: ``ok``/``failing``, and how it is judged when that is not the
    app's own health route (``ok · any <500``)."""
    text = health_text(health)
    if rule and rule.startswith("any answer") and text.plain == "ok":
        text.append(" · any <500", style="dim")
    return text


def cause_text(app: AppMetrics) -> Text:
    """Why the app is not (or was not) well: a pending change first, then the last error;
    red while it matters (failed, unhealthy, restarting), dim once the app has recovered."""
    cause = app.last_error or ""
    pending = app.pending
    if not cause and not pending:
        return Text("-", style="dim")
    out = Text()
    if pending:
        out.append(f"pending ({pending})", style="bold #d9822b")
        if cause:
            out.append(": ")
    if len(cause) > CAUSE_WIDTH:
        cause = cause[:CAUSE_WIDTH - 1] + "…"
    now = app.state in ("failed", "unhealthy", "restarting", "starting") or pending
    out.append(cause, style="#c83737" if now else "dim")
    return out


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``4d03h``; ``-`` for unknown."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(n: float | None) -> str:
    """Bytes as ``512B``, ``40.0M``, ``1.2G``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"  # unreachable; keeps type checkers content


def millis(ms: float | None) -> str:
    """Latency in milliseconds with precision that fits a narrow column."""
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 1000:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def rate(per_s: float | None) -> str:
    """Requests per second."""
    if per_s is None:
        return "-"
    return f"{per_s:.1f}" if per_s < 1000 else f"{per_s:.0f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def number(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def clock(ts: float) -> str:
    """Local wall-clock time of a request with milliseconds: ``14:03:07.123``."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def short_id(request_id: str, width: int = 8) -> str:
    return request_id if len(request_id) <= width else request_id[:width]
