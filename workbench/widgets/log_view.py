"""App output: one app's stdout/stderr or all apps merged, with follow and search."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import RichLog

from workbench import formatting as fmt

MATCH_STYLE = "bold reverse"
LEVEL_STYLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("CRITICAL", "ERROR", "Traceback", "Exception"), "#c83737"),
    (("WARNING", "WARN "), "#d9822b"),
    (("DEBUG",), "dim"),
)


def level_style(line: str) -> str:
    """A colour for a log line from the level word it carries (first 40 characters)."""
    head = line[:40]
    for words, style in LEVEL_STYLES:
        if any(w in head for w in words):
            return style
    return ""


class LogView(RichLog):
    """Shows log lines (objects with time, app, stream, line, request_id) that match `search`.

    The widget keeps the lines it shows (bounded) so that `copy_text` gives exactly what is on
    screen; the full history stays with the engine.
    """

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        background: $surface;
    }
    """

    app_filter: reactive[str | None] = reactive(None)
    """The app whose lines are shown; None shows every app, with an app column."""
    search: reactive[str] = reactive("")
    """Only lines containing this text (case-insensitive) are shown, with the match marked."""
    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view."""

    def __init__(self, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, highlight=False,
                         auto_scroll=True, id=id)
        self._shown: deque[Any] = deque(maxlen=max_lines)

    def watch_follow(self, follow: bool) -> None:
        self.auto_scroll = follow
        if follow:
            self.scroll_end(animate=False)

    def matches(self, line: Any) -> bool:
        if self.app_filter is not None and line.app != self.app_filter:
            return False
        return not self.search or self.search.lower() in line.line.lower()

    def show_lines(self, lines: Iterable[Any]) -> None:
        """Replace the content with the matching ones of `lines`."""
        self.clear()
        self._shown.clear()
        self.add_lines(lines)

    def add_lines(self, lines: Iterable[Any]) -> None:
        """Append the matching ones of `lines`."""
        for line in lines:
            if self.matches(line):
                self._shown.append(line)
                self.write(self._format_line(line), scroll_end=self.follow)

    def _format_line(self, line: Any) -> Text:
        text = Text(no_wrap=True)
        text.append(fmt.clock(line.time)[:8], style="dim")
        text.append(" ")
        if self.app_filter is None:
            text.append(f"{line.app[:10]:<10} ", style="bold")
        # Python logs everything to stderr, so the stream is a tag; colour follows the level.
        text.append("err " if line.stream == "stderr" else "out ", style="dim")
        body = Text(line.line, style=level_style(line.line))
        if self.search:
            body.highlight_words([self.search], style=MATCH_STYLE, case_sensitive=False)
        text.append_text(body)
        return text

    @property
    def line_count(self) -> int:
        return len(self._shown)

    def copy_text(self) -> str:
        """The shown lines as plain text (what `c` copies)."""
        return "\n".join(
            f"{fmt.clock(ln.time)} {ln.app} {ln.stream}: {ln.line}" for ln in self._shown)
