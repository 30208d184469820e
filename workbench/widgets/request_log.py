"""The live request log: a bounded, filterable list that can follow or pause.

It renders through the line API (like toolong's log view): only the rows on screen are
turned into text, so a flood of requests costs a deque append each, however many arrive.
A DataTable measures every cell of every new row, which under load took the event loop (and
so the gateway sharing it) for a fifth of a second per batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gateway.redact import mask_query
from gateway.requestlog import RequestRecord
from workbench import formatting as fmt
from workbench.messages import RequestChosen

# (label, width); the path column takes whatever the others leave.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("time", 12), ("id", 8), ("method", 6), ("path", 0), ("app", 8), ("st", 3), ("ms", 7),
)
GAP = 2
MIN_PATH = 12


@dataclass(frozen=True)
class RequestFilter:
    """Which requests the log shows; `None`/empty means "any"."""

    app: str | None = None
    status_class: str | None = None
    text: str = ""

    def matches(self, rec: RequestRecord) -> bool:
        if self.app is not None and (rec.app or "-") != self.app:
            return False
        if self.status_class is not None and rec.status_class != self.status_class:
            return False
        if self.text:
            needle = self.text.lower()
            hay = f"{rec.method} {rec.path} {rec.query} {rec.request_id} {rec.app} {rec.status}"
            return needle in hay.lower()
        return True

    def describe(self) -> str:
        parts = [f"app={self.app}" if self.app else "", self.status_class or "",
                 f"'{self.text}'" if self.text else ""]
        return " ".join(p for p in parts if p)


def row_text(rec: RequestRecord, path_width: int) -> Text:
    """One request as a row of fixed-width cells."""
    path = rec.path + (f"?{mask_query(rec.query)}" if rec.query else "")
    if len(path) > path_width:
        path = path[:max(0, path_width - 1)] + "…"
    cells: list[tuple[str, int, str | Style]] = [
        (fmt.clock(rec.time), 12, ""),
        (fmt.short_id(rec.request_id), 8, ""),
        (rec.method[:6], 6, ""),
        (path, path_width, ""),
        ((rec.app or "-")[:8], 8, ""),
    ]
    text = Text(no_wrap=True, overflow="crop")
    for value, width, style in cells:
        text.append(value.ljust(width) + " " * GAP, style=style)
    status = fmt.status_text(rec.status)
    text.append_text(status)
    text.append(" " * (3 - status.cell_len + GAP))
    text.append(fmt.millis(rec.latency_ms).rjust(7))
    return text


def header_text(path_width: int) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    for label, width in COLUMNS:
        width = width or path_width
        text.append(label.rjust(width) if label == "ms" else label.ljust(width))
        if label != "ms":
            text.append(" " * GAP)
    return text


class RequestLogView(ScrollView, can_focus=True):
    """Newest requests at the bottom; keeps at most `max_rows`.

    While `follow` is on, the cursor sticks to the newest row; while off (paused) new
    requests are held back and shown when following resumes, so the row under the cursor
    stays put.
    """

    COMPONENT_CLASSES = {"request-log--header", "request-log--cursor", "request-log--odd"}

    DEFAULT_CSS = """
    RequestLogView {
        height: 1fr;
        background: $surface;
        overflow-x: hidden;
    }
    RequestLogView > .request-log--header {
        background: $panel;
        text-style: bold;
    }
    RequestLogView > .request-log--odd {
        background: $surface-lighten-1;
    }
    RequestLogView > .request-log--cursor {
        background: $block-cursor-blurred-background;
    }
    RequestLogView:focus > .request-log--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "choose", "Trace", show=False),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    """Stick to the newest request (True) or hold new rows back (False: paused)."""
    held: reactive[int] = reactive(0)
    """How many matching requests arrived while paused."""
    shown: reactive[int] = reactive(0)
    """How many rows the log holds now."""
    cursor_row: reactive[int] = reactive(0, init=False)
    """Index of the highlighted row (0 is the oldest kept)."""

    def __init__(self, *, max_rows: int = 1000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_rows = max_rows
        self.filter = RequestFilter()
        self._rows: deque[RequestRecord] = deque(maxlen=max_rows)
        self._held: deque[RequestRecord] = deque(maxlen=max_rows)
        self._cache: dict[tuple[int, int], Text] = {}

    # --- data in ------------------------------------------------------------------------

    def add_records(self, records: Iterable[RequestRecord]) -> None:
        """Append the matching ones of a batch (or hold them back while paused)."""
        matching = [r for r in records if self.filter.matches(r)]
        if not matching:
            return
        if not self.follow:
            self._held.extend(matching)
            self.held = len(self._held)
            return
        self._append(matching)

    def rebuild(self, records: Iterable[RequestRecord], request_filter: RequestFilter) -> None:
        """Show the newest `max_rows` of `records` that match `request_filter`."""
        self.filter = request_filter
        self._rows.clear()
        self._held.clear()
        self.held = 0
        self._cache.clear()
        self._append([r for r in records if request_filter.matches(r)])

    def _append(self, records: list[RequestRecord]) -> None:
        dropped = max(0, len(self._rows) + len(records) - self.max_rows)
        self._rows.extend(records)
        if dropped:
            self._cache.clear()  # row indexes moved
        self.shown = len(self._rows)
        self._resize()
        if self.follow:
            self.cursor_row = len(self._rows) - 1
        else:
            self.cursor_row = max(0, self.cursor_row - dropped)
        self.refresh()

    def _resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)

    # --- queries ------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def record_at(self, row: int) -> RequestRecord:
        return self._rows[row]

    @property
    def selected_record(self) -> RequestRecord | None:
        """The request under the cursor."""
        if not self._rows:
            return None
        return self._rows[min(self.cursor_row, len(self._rows) - 1)]

    # --- cursor -------------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, row: int) -> None:
        self.cursor_row = row

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._rows) - 1))

    def watch_cursor_row(self) -> None:
        # After the refresh: a new virtual size only counts for scrolling once laid out.
        self.call_after_refresh(self._scroll_to_cursor)
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + self._page:
            self.scroll_to(y=self.cursor_row - self._page + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self.cursor_row += step

    def action_page(self, step: int) -> None:
        self.cursor_row += step * self._page

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self._rows) - 1

    def action_choose(self) -> None:
        rec = self.selected_record
        if rec is not None:
            self.post_message(RequestChosen(rec.request_id))

    def on_click(self, event: events.Click) -> None:
        row = round(self.scroll_y) + event.y - 1
        if 0 <= row < len(self._rows):
            if row == self.cursor_row and event.chain > 1:
                self.action_choose()
            self.cursor_row = row

    # --- follow / pause -----------------------------------------------------------------

    def watch_follow(self, follow: bool) -> None:
        if follow and self._held:
            held = list(self._held)
            self._held.clear()
            self.held = 0
            self._append(held)
        elif follow:
            self.cursor_row = len(self._rows) - 1

    # --- rendering ----------------------------------------------------------------------

    def _path_width(self) -> int:
        fixed = 1 + sum(w for _, w in COLUMNS) + GAP * (len(COLUMNS) - 1)  # 1: left margin
        return max(MIN_PATH, self.scrollable_content_region.width - fixed)

    def on_resize(self) -> None:
        self._cache.clear()
        self._resize()
        self.call_after_refresh(self._scroll_to_cursor)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        path_width = self._path_width()
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("request-log--header")
            return self._strip(header_text(path_width), width, style)
        row = round(self.scroll_y) + y - 1
        if row >= len(self._rows):
            return Strip.blank(width, base)
        key = (row, path_width)
        text = self._cache.get(key)
        if text is None:
            if len(self._cache) > 2000:
                self._cache.clear()
            text = self._cache[key] = row_text(self._rows[row], path_width)
        style = base
        if row % 2:
            style += self.get_component_rich_style("request-log--odd")
        if row == self.cursor_row:
            style += self.get_component_rich_style("request-log--cursor")
        return self._strip(text, width, style)

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        segments = [Segment(" ", style)]
        segments += [Segment(seg.text, style + seg.style if seg.style else style)
                     for seg in text.render(self.app.console)]
        return Strip(segments).crop_extend(0, width, style)
