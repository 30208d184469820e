"""Text from outside (an app's output, an exception's message) made safe for a log line.

The one place that decides what an app may put on the user's terminal. Control characters
could move the cursor, clear the screen, retitle the terminal or forge a log line, so none
reaches a log line, the UI or a status field:

* ANSI escape sequences (CSI such as colours ``ESC[31m``, and OSC such as titles and links)
  are **removed**: servers colour their logs when they believe they write to a terminal, and
  the colour codes are presentation, not content. Keeping them would mean trusting every
  app's bytes with the terminal; escaping them would bury the text in ``\\x1b[32m`` noise.
* every other C0 or C1 control character (and DEL) except tab is **escaped** as ``\\xNN``,
  so what an app printed stays visible and a raw byte cannot act.
"""

from __future__ import annotations

import re

# CSI: ESC [ params intermediates final; OSC: ESC ] ... (BEL | ESC \\); other two-byte
# escapes (ESC followed by one character from @ to _); the 8-bit CSI (U+009B) as well.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """`text` with ANSI sequences removed and other control characters escaped (tab kept)."""
    if text.isprintable():  # the common case: nothing to do, and no regex run
        return text
    return _CONTROL.sub(_escape, _ANSI.sub("", text))
