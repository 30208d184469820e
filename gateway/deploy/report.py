"""What an export could not carry over faithfully, and what it did instead.

Every target collects items while it renders; the list is printed, written beside the files
as ``REPORT.md``, and makes ``--strict`` fail. An item names the feature and what the
generated configuration does in its place; the same item for several apps is one line that
names them all, so the report stays readable for a project with many apps.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReportItem:
    feature: str
    detail: str
    subjects: list[str] = field(default_factory=list)

    def line(self) -> str:
        who = f" ({', '.join(self.subjects)})" if self.subjects else ""
        return f"- {self.feature}{who}: {self.detail}"


@dataclass
class Report:
    target: str
    items: list[ReportItem] = field(default_factory=list)
    #: Facts worth knowing that are not losses (chosen ports, the image's Python...).
    notes: list[str] = field(default_factory=list)

    def add(self, feature: str, detail: str, *, subject: str | None = None) -> None:
        """Record a loss; `subject` (an app name) joins it to the same loss of other apps."""
        for item in self.items:
            if item.feature == feature and item.detail == detail:
                if subject and subject not in item.subjects:
                    item.subjects.append(subject)
                return
        self.items.append(ReportItem(feature, detail, [subject] if subject else []))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def text(self) -> str:
        lines = [f"# pyserve-tui export {self.target}: report", ""]
        if self.notes:
            lines += ["## Choices made", ""]
            lines += [f"- {n}" for n in self.notes]
            lines.append("")
        lines += ["## No faithful equivalent in this target", ""]
        if self.items:
            lines += [i.line() for i in self.items]
        else:
            lines.append("Nothing: every feature of the project maps onto this target.")
        return "\n".join(lines) + "\n"
