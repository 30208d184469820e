"""Credentials in the UI: the trace masks them until `v`, `c` copies what is shown, the
request log row masks token-like query parameters, and the export dialog's explicit option
is the only way they reach a file."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from rich.console import Console
from textual.widgets import Checkbox, Input, Static

from gateway.events import RequestsCompleted
from tests.support.fake_engine import FakeEngine, make_record
from tests.support.harness import wait_until
from workbench.app import create_app
from workbench.messages import RequestChosen
from workbench.screens.export_dialog import ExportDialog
from workbench.screens.trace import TraceScreen

BASIC = "Basic " + base64.b64encode(b"alice:wonder-pw").decode()


def secret_record(i: int):  # type: ignore[no-untyped-def]
    rec = make_record(i)
    return rec._replace(
        query="access_token=tok-123&page=2",
        request_headers=[*rec.request_headers, (b"authorization", BASIC.encode()),
                         (b"cookie", b"sid=cookie-456; theme=dark")],
        response_headers=[*rec.response_headers,
                          (b"set-cookie", b"sid=cookie-789; Path=/; HttpOnly")])


SECRETS = ("tok-123", "cookie-456", "cookie-789", BASIC.split()[1])


async def test_trace_masks_until_v_and_copy_and_export_honour_it(shop_dir: Path) -> None:
    engine = FakeEngine(shop_dir / "workbench.toml")
    app = create_app(engine, poll_interval=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.phase == "running", 30.0, what="the fake engine", interval=0.1,
                         pause=pilot.pause)
        rec = secret_record(10_000)
        engine.request_log.records.append(rec)
        engine.events.emit(RequestsCompleted((rec,)))
        log = app.dashboard.request_log
        await wait_until(lambda: any(log.record_at(i).request_id == rec.request_id
                                            for i in range(log.row_count)), 30.0,
                                            what="the request", interval=0.1, pause=pilot.pause)
        app.post_message(RequestChosen(rec.request_id))
        await wait_until(lambda: isinstance(app.screen, TraceScreen), 30.0, what="the trace",
                         interval=0.1, pause=pilot.pause)
        trace = app.screen
        assert isinstance(trace, TraceScreen)

        def shown() -> str:
            console = Console(width=200, record=True, file=io.StringIO())
            for name in ("trace-title", "trace-request-headers", "trace-response-headers"):
                console.print(trace.query_one(f"#{name}", Static).content)
            return console.export_text()

        text = shown()
        assert not any(s in text for s in SECRETS), text
        assert "Basic [redacted]" in text and "page=2" in text and "v reveals" in text
        await pilot.press("c")
        assert not any(s in app.clipboard for s in SECRETS)
        assert json.loads(app.clipboard)["request_id"] == rec.request_id

        await pilot.press("v")
        text = shown()
        assert all(s in text for s in SECRETS), text
        await pilot.press("c")
        assert all(s in app.clipboard for s in SECRETS)
        await pilot.press("v")
        assert not any(s in shown() for s in SECRETS)
        await pilot.press("escape")

        # the dashboard row and its copy mask the token too
        await pilot.press("tab", "end", "c")
        assert "access_token=[redacted]" in app.clipboard and "tok-123" not in app.clipboard

        # x: sanitized unless the box is ticked
        for include in (False, True):
            target = shop_dir / f"export-{include}.jsonl"
            await pilot.press("x")
            dialog = app.screen
            assert isinstance(dialog, ExportDialog)
            box = dialog.query_one("#export-credentials", Checkbox)
            assert box.value is False  # off whenever the dialog opens
            box.value = include
            dialog.query_one("#export-path", Input).value = str(target)
            dialog.query_one("#export-path", Input).focus()
            await pilot.press("enter")
            await wait_until(target.exists, 30.0, what="the export", interval=0.1,
                             pause=pilot.pause)
            written = target.read_text()
            assert all(s in written for s in SECRETS) is include
            assert any(s in written for s in SECRETS) is include
