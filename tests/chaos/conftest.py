"""Fixtures for the chaos suite: real headless gateways, always taken down and checked.

Every test here is marked `chaos`. `PYSERVE_CHAOS_SECONDS` sets how long the load scenarios
run (5 s by default, which keeps the folder short enough for CI); `bench/chaos.py` runs the
same tests with a long setting and prints what they reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.chaos import HeadlessGateway, StartGateway


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start `pyserve-tui --no-ui` on project text. Afterwards: SIGTERM, exit code 0 and no
    process of any group it (or its apps) started left alive, or the test fails."""
    started: list[HeadlessGateway] = []

    async def start(text: str) -> HeadlessGateway:
        folder = tmp_path / f"gw{len(started)}"
        folder.mkdir()
        gateway = HeadlessGateway(folder, text)
        started.append(gateway)
        await gateway.start()
        return gateway

    yield start
    problems: list[str] = []
    for gateway in started:
        try:
            code = await gateway.stop()
            if code != 0:
                problems.append(f"gateway exited with {code}: {gateway.stderr[-10:]}")
            left = await gateway.leftovers()
            if left:
                problems.append(f"processes left behind: {left}")
        except BaseException as exc:
            problems.append(f"stopping the gateway failed: {exc!r}")
        finally:
            await gateway.kill()  # no-op when all went well; never leaves anything
    assert not problems, problems
