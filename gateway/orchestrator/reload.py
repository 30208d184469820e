"""Which files to watch for an app with `reload` or `watch`, and the watch loop itself."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import Change, awatch

from gateway.config.schema import AppConfig, ProjectConfig

log = logging.getLogger("pyserve.orchestrator")

_IGNORED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache",
                           ".pytest_cache", ".ruff_cache"})


class WatchSpec:
    """Folders to watch and a filter that says which changed paths matter."""

    def __init__(self, config: AppConfig, project: ProjectConfig) -> None:
        self.root = project.root.resolve()
        self.folders: list[Path] = []
        self.patterns: list[str] = list(config.watch)
        self.python_under: list[Path] = []
        if config.reload:
            base = project.resolve(config.module_path) if config.module_path else self.root
            base = base.resolve()
            self.python_under.append(base)
            self.folders.append(base)
        if self.patterns:
            self.folders.append(self.root)
        self.folders = [f for f in dict.fromkeys(self.folders) if f.is_dir()]

    def __bool__(self) -> bool:
        return bool(self.folders)

    def matches(self, path: str) -> bool:
        p = Path(path)
        if _IGNORED_DIRS.intersection(p.parts):
            return False
        if p.suffix == ".py" and any(p.is_relative_to(base) for base in self.python_under):
            return True
        if not self.patterns or not p.is_relative_to(self.root):
            return False
        rel = p.relative_to(self.root).as_posix()
        for pattern in self.patterns:
            if fnmatch.fnmatch(rel, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:]):
                return True
        return False

    def filter(self, change: Change, path: str) -> bool:
        return self.matches(path)

    def __repr__(self) -> str:
        return f"<WatchSpec folders={[str(f) for f in self.folders]} patterns={self.patterns}>"


async def watch_files(spec: WatchSpec, on_change: Callable[[list[str]], Awaitable[None]],
                      stop: asyncio.Event, *, debounce_ms: int = 300) -> None:
    """Call `on_change` with the changed paths after each debounced batch until `stop`."""
    async for changes in awatch(*spec.folders, watch_filter=spec.filter, stop_event=stop,
                                debounce=debounce_ms, step=50, recursive=True):
        paths = sorted({path for _, path in changes})
        try:
            await on_change(paths)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reload after a change to %s failed", paths[:3])
