"""The live request log: a bounded, filterable DataTable that can follow or pause."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import count

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey

from gateway.requestlog import RequestRecord
from workbench import formatting as fmt
from workbench.messages import RequestChosen

# (key, label, width); the path column's width follows the table's width.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "time", 12), ("id", "id", 8), ("method", "method", 6), ("path", "path", 24),
    ("app", "app", 8), ("status", "st", 3), ("ms", "ms", 7),
)


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

    @property
    def active(self) -> bool:
        return bool(self.app or self.status_class or self.text)

    def describe(self) -> str:
        parts = [f"app={self.app}" if self.app else "", self.status_class or "",
                 f"'{self.text}'" if self.text else ""]
        return " ".join(p for p in parts if p)


class RequestLogTable(DataTable[str | Text]):
    """Newest requests at the bottom; keeps at most `max_rows` rows.

    While `follow` is on the view sticks to the newest row; while off (paused) new requests
    are held back and shown when following resumes, so the row under the cursor stays put.
    """

    DEFAULT_CSS = """
    RequestLogTable {
        height: 1fr;
    }
    """

    follow: reactive[bool] = reactive(True)
    """Stick to the newest request (True) or hold new rows back (False: paused)."""
    held: reactive[int] = reactive(0)
    """How many matching requests arrived while paused."""
    shown: reactive[int] = reactive(0)
    """How many rows the table holds now."""

    def __init__(self, *, max_rows: int = 1000, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.max_rows = max_rows
        self.filter = RequestFilter()
        self._keys: deque[str] = deque()
        self._records: dict[str, RequestRecord] = {}
        self._held: deque[RequestRecord] = deque(maxlen=max_rows)
        self._seq = count()

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def on_resize(self) -> None:
        self._fit_path_column()

    def _fit_path_column(self) -> None:
        """Give the path column whatever width the fixed columns leave (at least 12)."""
        fixed = sum(w for key, _, w in COLUMNS if key != "path")
        padding = 2 * self.cell_padding * len(COLUMNS)
        # Reserve the vertical scrollbar even before there are enough rows to show it.
        scrollbar = 0 if self.show_vertical_scrollbar else self.styles.scrollbar_size_vertical
        width = max(12, self.scrollable_content_region.width - fixed - padding - scrollbar)
        column = self.columns.get(ColumnKey("path"))
        if column is not None and column.width != width:
            column.width = width
            # DataTable has no public "resize a column"; these two are what add_column does.
            self._clear_caches()
            self._require_update_dimensions = True
            self.refresh()

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
        newest: deque[RequestRecord] = deque(
            (r for r in records if request_filter.matches(r)), maxlen=self.max_rows)
        self._held.clear()
        self.held = 0
        self.clear()
        self._keys.clear()
        self._records.clear()
        self._append(list(newest))

    def _append(self, records: list[RequestRecord]) -> None:
        records = records[-self.max_rows:]
        overflow = len(self._keys) + len(records) - self.max_rows
        if overflow > self.max_rows // 4:
            # Cheaper to start over than to remove many rows one by one (each is O(rows)).
            kept = [self._records[k] for k in list(self._keys)[overflow:]]
            self.clear()
            self._keys.clear()
            self._records.clear()
            records = kept + records
        else:
            for _ in range(max(0, overflow)):
                old = self._keys.popleft()
                del self._records[old]
                self.remove_row(old)
        for rec in records:
            key = str(next(self._seq))
            self._keys.append(key)
            self._records[key] = rec
            self.add_row(*self._cells(rec), key=key)
        self.shown = len(self._keys)
        if self.follow:
            self.move_cursor(row=self.row_count - 1, animate=False, scroll=True)

    @staticmethod
    def _cells(rec: RequestRecord) -> tuple[str | Text, ...]:
        return (
            fmt.clock(rec.time),
            fmt.short_id(rec.request_id),
            rec.method,
            rec.path + (f"?{rec.query}" if rec.query else ""),
            rec.app or "-",
            fmt.status_text(rec.status),
            Text(fmt.millis(rec.latency_ms), justify="right"),
        )

    # --- follow / pause -----------------------------------------------------------------

    def watch_follow(self, follow: bool) -> None:
        if follow and self._held:
            held = list(self._held)
            self._held.clear()
            self.held = 0
            self._append(held)
        elif follow and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False, scroll=True)

    # --- selection ----------------------------------------------------------------------

    @property
    def selected_record(self) -> RequestRecord | None:
        """The request under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return self._records.get(key.value or "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        rec = self._records.get(event.row_key.value or "")
        if rec is not None:
            self.post_message(RequestChosen(rec.request_id))
