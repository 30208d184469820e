"""The whole story of one request: timings, headers, routing and cache decisions, and the
app's own log lines that carry its request id.

Credentials (Authorization, cookies, token-like query parameters: see `gateway.redact`) are
masked until the user presses `v`; `c` copies what is shown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from gateway.redact import redact_request
from workbench import formatting as fmt
from workbench.messages import CopyText, ShowLogs
from workbench.widgets.log_view import level_style

if TYPE_CHECKING:
    from gateway.snapshots import Trace

BAR_WIDTH = 40


def _kv_table(rows: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(fmt.number(value)))
    return table


def _headers_table(headers: list[Any]) -> RenderableType:
    if not headers:
        return Text("(none)", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(style="#2a7fd4", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in headers:
        # Text, not str: a header value such as "[redacted]" or "[/b]" is not Rich markup.
        table.add_row(Text(f"{name}:"), Text(str(value)))
    return table


def _bar(label: str, start: float, length: float, total: float, style: str) -> Text:
    """One waterfall row: a bar from `start` for `length` ms on a `total` ms scale."""
    scale = BAR_WIDTH / total if total > 0 else 0
    offset = int(start * scale)
    width = max(1, round(length * scale)) if length > 0 else 0
    text = Text(f"{label:<18}", style="bold")
    text.append(" " * offset + "█" * min(width, BAR_WIDTH - offset), style=style)
    text.append(" " * max(0, BAR_WIDTH - offset - width) + f" {fmt.millis(length)} ms")
    return text


def timings(req: dict[str, Any]) -> RenderableType:
    """A small waterfall: gateway total, upstream connect / wait / total, gateway's own time."""
    total = float(req.get("latency_ms") or 0.0)
    connect = req.get("upstream_connect_ms")
    ttfb = req.get("upstream_ttfb_ms")
    upstream = req.get("upstream_total_ms")
    rows = [_bar("gateway total", 0, total, total, "#2a7fd4")]
    if upstream is not None:
        before = max(0.0, (total - float(upstream)) / 2)
        if connect is not None:
            rows.append(_bar("upstream connect", before, float(connect), total, "#d9822b"))
        if ttfb is not None:
            rows.append(_bar("upstream wait", before, float(ttfb), total, "#e0b000"))
        rows.append(_bar("upstream total", before, float(upstream), total, "#2e9e4f"))
        rows.append(_bar("in gateway", 0, max(0.0, total - float(upstream)), total, "#7a7a7a"))
    else:
        rows.append(Text("answered by the gateway itself (no upstream)", style="dim"))
    return Group(*rows)


def summary(req: dict[str, Any]) -> RenderableType:
    notes = req.get("notes") or {}
    rows: list[tuple[str, Any]] = [
        ("request id", req.get("request_id")),
        ("time", fmt.clock(req["time"]) if req.get("time") else None),
        ("client", req.get("client")),
        ("app", req.get("app")),
        ("route", req.get("route")),
        ("upstream", req.get("upstream")),
        ("cache", req.get("cache")),
        ("traceparent", req.get("traceparent")),
    ]
    rows += [(str(k), v if isinstance(v, str | int | float) else json.dumps(v, default=str))
             for k, v in notes.items()]
    return _kv_table(rows)


def app_lines(lines: Sequence[Any]) -> RenderableType:
    if not lines:
        return Text("(no app log line carries this request id)", style="dim")
    out = Text()
    for ln in lines:
        out.append(fmt.clock(ln.time), style="dim")
        out.append(f" {ln.stream:<6} ", style="dim")
        out.append(ln.line + "\n", style=level_style(ln.line))
    out.rstrip()
    return out


def trace_json(trace: Trace, *, revealed: bool = False) -> str:
    """The trace as JSON (what `c` copies): credentials masked unless `revealed`."""
    request = trace.request.to_dict()
    data = request if revealed else redact_request(request)
    data["app_lines"] = [{"time": ln.time, "stream": ln.stream, "line": ln.line}
                         for ln in trace.app_lines]
    return json.dumps(data, indent=2, default=str)


class TraceScreen(Screen[None]):
    """Read-only view of `engine.trace(request_id)`."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("c", "copy", "Copy trace"),
        Binding("v", "reveal", "Reveal credentials"),
        Binding("l", "logs", "App logs"),
    ]

    def __init__(self, trace: Trace) -> None:
        super().__init__(id="trace")
        self.trace = trace
        self.request = trace.request.to_dict()  # headers decoded, as shown and copied
        self.revealed = False
        """Whether credentials are shown as they were (`v` toggles)."""
        self.masks = redact_request(self.request) != self.request
        """Whether the request carries anything `v` would reveal."""

    def _shown(self) -> dict[str, Any]:
        return self.request if self.revealed else redact_request(self.request)

    def _title(self, req: dict[str, Any]) -> Text:
        status = fmt.status_text(int(req.get("status") or 0))
        return Text.assemble(
            (" Trace ", "bold reverse"), " ", (req.get("method", ""), "bold"), " ",
            req.get("path", "") + (f"?{req['query']}" if req.get("query") else ""), " → ",
            status, f"  {fmt.millis(req.get('latency_ms'))} ms",
            ("  (credentials masked: v reveals)" if self.masks and not self.revealed else "",
             "dim"))

    def compose(self) -> ComposeResult:
        req = self._shown()
        yield Static(self._title(req), id="trace-title")
        with VerticalScroll(id="trace-body"):
            for section_id, label, renderable in (
                ("trace-summary", "Request", summary(req)),
                ("trace-timings", "Timings", timings(req)),
                ("trace-app-lines", "App log lines", app_lines(self.trace.app_lines)),
                ("trace-request-headers", "Request headers",
                 _headers_table(req.get("request_headers") or [])),
                ("trace-response-headers", "Response headers",
                 _headers_table(req.get("response_headers") or [])),
            ):
                section = Static(renderable, id=section_id, classes="trace-section")
                section.border_title = label
                yield section
        yield Footer()

    def action_copy(self) -> None:
        masked = "" if self.revealed else " (credentials masked)"
        self.post_message(CopyText(trace_json(self.trace, revealed=self.revealed),
                                   what=f"trace {self.request.get('request_id')}{masked}"))

    def action_reveal(self) -> None:
        self.revealed = not self.revealed
        req = self._shown()
        self.query_one("#trace-title", Static).update(self._title(req))
        self.query_one("#trace-summary", Static).update(summary(req))
        self.query_one("#trace-request-headers", Static).update(
            _headers_table(req.get("request_headers") or []))
        self.query_one("#trace-response-headers", Static).update(
            _headers_table(req.get("response_headers") or []))

    def action_logs(self) -> None:
        self.post_message(ShowLogs(self.request.get("app")))

    def __repr__(self) -> str:
        return f"<TraceScreen {getattr(self, 'request', {}).get('request_id')}>"
