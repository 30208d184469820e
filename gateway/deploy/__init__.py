"""Deployment export (`pyserve-tui export`) and project import (`pyserve-tui import`).

Not to be confused with `gateway.export`, which writes the request log to JSON Lines/HAR.

`export_files` turns a validated project into the files of one target plus a `Report`;
`write_export` puts them in a folder. Output is a pure function of the project file (and,
for systemd, of the environment the workbench runs in): same input, same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config.schema import ProjectConfig
from gateway.deploy.report import Report
from gateway.errors import ConfigError

TARGETS = ("compose", "kubernetes", "systemd")
#: Lists the files the last export wrote, so the next one removes those it no longer makes.
MANIFEST = ".pyserve-export"


@dataclass
class ExportResult:
    target: str
    files: dict[str, str]
    report: Report


def _exporter(target: str) -> Callable[[ProjectConfig, Path], tuple[dict[str, str], Report]]:
    if target == "compose":
        from gateway.deploy.compose import export_compose
        return export_compose
    if target == "kubernetes":
        from gateway.deploy.kubernetes import export_kubernetes
        return export_kubernetes
    if target == "systemd":
        from gateway.deploy.systemd import export_systemd
        return export_systemd
    raise ConfigError(f"unknown export target {target!r} (known: {', '.join(TARGETS)})")


def export_files(project: ProjectConfig, target: str, out: Path) -> ExportResult:
    """The files of `target` for `project`, to be written into `out`."""
    try:
        files, report = _exporter(target)(project, out)
    except ValueError as exc:
        raise ConfigError(str(exc), path=str(project.path)) from None
    files["REPORT.md"] = report.text()
    return ExportResult(target, dict(sorted(files.items())), report)


def write_export(result: ExportResult, out: Path) -> list[Path]:
    """Write the files (atomically each), removing ones a previous export made and this one
    no longer does (a renamed app must not leave a stale unit behind)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    previous: set[str] = set()
    if manifest.is_file():
        previous = set(manifest.read_text(encoding="utf-8").split())
    written = []
    for name, text in result.files.items():
        path = out / name
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    for stale in sorted(previous - set(result.files)):
        if "/" not in stale and not stale.startswith("."):
            (out / stale).unlink(missing_ok=True)
    manifest.write_text("".join(f"{n}\n" for n in result.files), encoding="utf-8")
    return written
