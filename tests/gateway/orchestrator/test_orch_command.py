"""How a `command` app's argv is built before the runner execs it."""

from __future__ import annotations

import sys

import pytest

from gateway.orchestrator.runner import command_argv


@pytest.mark.parametrize("program", ["python", "python3"])
def test_bare_python_is_the_workbench_interpreter(program: str) -> None:
    argv = command_argv([program, "-m", "http.server", "$PORT"], 9123)
    assert argv == [sys.executable, "-m", "http.server", "9123"]


def test_explicit_interpreters_and_other_programs_are_left_alone() -> None:
    assert command_argv(["/usr/bin/python3", "app.py"], 1)[0] == "/usr/bin/python3"
    assert command_argv(["python3.11", "app.py"], 1)[0] == "python3.11"
    assert command_argv(["node", "server.js", "--port=${PORT}"], 8080) == [
        "node", "server.js", "--port=8080"]
    assert command_argv(["app.py", "python"], 1) == ["app.py", "python"]
