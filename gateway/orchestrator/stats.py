"""CPU and memory of an app's whole process tree (runner and workers), cheaply.

`psutil.Process.cpu_percent` measures since its previous call on the same object, so the
objects are kept between samples; a sample younger than `max_age` is reused.
"""

from __future__ import annotations

import time

import psutil

from gateway.orchestrator.runner import GUARD_NAME

_GUARD = GUARD_NAME.decode()


class ProcessTreeStats:
    def __init__(self, max_age: float = 0.5) -> None:
        self.max_age = max_age
        self._procs: dict[int, psutil.Process] = {}
        self._root: int | None = None
        self._at = 0.0
        self._value: tuple[float | None, int | None] = (None, None)

    def sample(self, root_pid: int | None) -> tuple[float | None, int | None]:
        """(cpu_percent, rss_bytes) summed over the tree; (None, None) with no process."""
        if root_pid is None:
            self._procs.clear()
            self._root = None
            return None, None
        now = time.monotonic()
        if root_pid == self._root and now - self._at < self.max_age:
            return self._value
        if root_pid != self._root:
            self._procs.clear()
            self._root = root_pid
        try:
            root = self._procs.get(root_pid) or psutil.Process(root_pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            self._value = (None, None)
            return self._value
        procs: dict[int, psutil.Process] = {}
        cpu = 0.0
        rss = 0
        for proc in tree:
            known = self._procs.get(proc.pid, proc)
            try:
                with known.oneshot():
                    if known.name() == _GUARD:
                        continue
                    cpu += known.cpu_percent(None)
                    rss += known.memory_info().rss
            except psutil.Error:
                continue
            procs[proc.pid] = known
        self._procs = procs
        self._at = now
        self._value = (round(cpu, 1), rss)
        return self._value

    def __repr__(self) -> str:
        return f"<ProcessTreeStats root={self._root} procs={len(self._procs)}>"
