"""Export the request log with traces as JSON Lines or HAR 1.2.

Exports are sanitized unless the caller asks for credentials (`gateway.redact`): HAR files
end up attached to bug reports, and a session cookie or a bearer token in one is a leak.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.config.writer import write_atomic
from gateway.redact import redact_request

if TYPE_CHECKING:
    from gateway.orchestrator.logs import LogLine
    from gateway.requestlog import RequestRecord


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _har_entry(rec: dict[str, Any], app_lines: list[Any]) -> dict[str, Any]:
    def headers(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in pairs]

    host = next((v for k, v in rec["request_headers"] if k.lower() == "host"), "localhost")
    query = [{"name": k, "value": v} for k, _, v in
             (p.partition("=") for p in rec["query"].split("&") if p)]
    url = f"http://{host}{rec['path']}" + (f"?{rec['query']}" if rec["query"] else "")
    wait = rec["upstream_ttfb_ms"] or 0.0
    return {
        "startedDateTime": _iso(rec["time"]),
        "time": rec["latency_ms"],
        "request": {"method": rec["method"], "url": url, "httpVersion": "HTTP/1.1",
                    "cookies": [], "headers": headers(rec["request_headers"]),
                    "queryString": query, "headersSize": -1, "bodySize": -1},
        "response": {"status": rec["status"], "statusText": "", "httpVersion": "HTTP/1.1",
                     "cookies": [], "headers": headers(rec["response_headers"]),
                     "content": {"size": -1, "mimeType": next(
                         (v for k, v in rec["response_headers"] if k.lower() == "content-type"),
                         "")},
                     "redirectURL": "", "headersSize": -1, "bodySize": -1},
        "cache": {},
        "timings": {"send": 0, "wait": wait, "receive": max(0.0, rec["latency_ms"] - wait)},
        "_requestId": rec["request_id"], "_app": rec["app"], "_route": rec["route"],
        "_appLines": [ln.line for ln in app_lines],
    }


def export_requests(records: Sequence[RequestRecord], app_lines: Iterable[LogLine], path: Path,
                    fmt: str, *, include_credentials: bool = False) -> int:
    """Write `records` with the app lines that carry their request ids (a copy the caller
    took: this runs in a worker thread while the gateway goes on).

    Credential headers and token-like query parameters are masked unless
    `include_credentials` is true."""
    by_id: dict[str, list[Any]] = {}
    for line in app_lines:
        if line.request_id:
            by_id.setdefault(line.request_id, []).append(line)
    shown = (lambda d: d) if include_credentials else redact_request
    traces: list[dict[str, Any]] = [
        {"request": shown(r.to_dict()), "app_lines": by_id.get(r.request_id, [])}
        for r in records]
    if fmt == "jsonl":
        lines = []
        for t in traces:
            row = dict(t["request"])
            row["app_lines"] = [{"time": ln.time, "stream": ln.stream, "line": ln.line}
                                for ln in t["app_lines"]]
            lines.append(json.dumps(row, default=str))
        write_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    elif fmt == "har":
        har = {"log": {"version": "1.2",
                       "creator": {"name": "pyserve-tui", "version": __version__},
                       "entries": [_har_entry(t["request"], t["app_lines"]) for t in traces]}}
        write_atomic(path, json.dumps(har, indent=1, default=str))
    else:
        raise ValueError(f"unknown export format {fmt!r} (jsonl or har)")
    return len(records)
