"""The compiled build (setup.py, `PYSERVE_TUI_COMPILE=1`) runs the same tests as the
interpreted one.

mypyc changes a few semantics of the modules it compiles (a name bound in two `except`
clauses keeps the type of the first, an interpreted class may not subclass a compiled one,
attributes cannot be added to instances), which mypy does not flag. This builds `HOT_PATH`
in a copy of the package, the way a compiled wheel is built, and runs the tests of the
request path against it in a child process (`PYTHONPATH` puts the copy first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The tests of what `HOT_PATH` compiles: the front, the direct path, the proxy, routing,
#: the request log and metrics, and the gateway end to end with orchestrated apps.
SUITES = [
    "tests/gateway/proxy",
    "tests/gateway/servers/test_front_h1.py",
    "tests/gateway/routing",
    "tests/gateway/test_requestlog.py",
    "tests/gateway/orchestrator/test_orch_proxy.py",
    "tests/chaos/test_chaos_requests.py",
    "tests/chaos/test_chaos_hung.py",
]

#: A test that swaps a method of a compiled class, which compiled callers never look up.
MONKEYPATCHES_COMPILED = \
    "tests/gateway/proxy/test_proxy_pools.py::test_pool_still_connecting_is_not_pruned"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                       reason="no C compiler"),
]


def test_the_request_path_passes_its_tests_compiled(tmp_path: Path) -> None:
    pytest.importorskip("mypyc")
    copy = tmp_path / "compiled"
    copy.mkdir()
    for top in ("gateway", "workbench", "tests", "examples"):
        shutil.copytree(ROOT / top, copy / top,
                        ignore=shutil.ignore_patterns("__pycache__", ".compiled"))
    for name in ("setup.py", "pyproject.toml", "README.md", "workbench.toml"):
        shutil.copy2(ROOT / name, copy / name)
    env = {**os.environ, "PYSERVE_TUI_COMPILE": "1", "PYTHONPATH": str(copy)}
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    compiled = sorted(p.relative_to(copy).as_posix() for p in copy.glob("gateway/**/*.so"))
    assert "gateway/direct" in " ".join(compiled), compiled

    probe = subprocess.run(
        [sys.executable, "-c", "import gateway.servers.h1 as m; print(m.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().endswith(".so"), (probe.stdout, probe.stderr)

    tests = [s for s in SUITES if (copy / s).exists()]
    assert len(tests) == len(SUITES), set(SUITES) - set(tests)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
                          *tests, "--deselect", MONKEYPATCHES_COMPILED], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
