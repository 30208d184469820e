"""The compiled build (setup.py) is what a wheel gets, and runs the same tests as the
interpreted one.

mypyc changes a few semantics of the modules it compiles (a name bound in two `except`
clauses keeps the type of the first, an interpreted class may not subclass a compiled one,
attributes cannot be added to instances), which mypy does not flag. This builds a wheel of a
copy of the checkout as `pip install .` does (build isolation, no settings), unpacks it, and
runs the tests of the request path against it in a child process (`PYTHONPATH` puts the
unpacked wheel first). An in-place build, as an editable install makes, compiles nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
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


def test_a_wheel_is_compiled_and_passes_the_request_path_tests(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    copy.mkdir()
    for top in ("gateway", "workbench", "tests", "examples"):
        shutil.copytree(ROOT / top, copy / top,
                        ignore=shutil.ignore_patterns("__pycache__", ".compiled", "*.so"))
    for name in ("setup.py", "pyproject.toml", "README.md", "workbench.toml"):
        shutil.copy2(ROOT / name, copy / name)
    env = {k: v for k, v in os.environ.items() if k != "PYSERVE_TUI_COMPILE"}

    # In place (what an editable install builds): nothing is compiled, edits apply.
    in_place = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                              cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert in_place.returncode == 0, in_place.stderr[-3000:]
    assert not list(copy.glob("**/*.so"))

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path / "dist"), "."], cwd=copy, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "no compiled build" not in built.stderr, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("pyserve_tui-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    compiled = sorted(p.relative_to(installed).as_posix()
                      for p in installed.glob("gateway/**/*.so"))
    assert "gateway/direct" in " ".join(compiled), compiled

    env["PYTHONPATH"] = str(installed)
    probe = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.build())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "compiled", (probe.stdout, probe.stderr)

    tests = [s for s in SUITES if (copy / s).exists()]
    assert len(tests) == len(SUITES), set(SUITES) - set(tests)
    # From the checkout's tests, with the checkout's own package out of the way.
    shutil.rmtree(copy / "gateway")
    shutil.rmtree(copy / "workbench")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
                          *tests, "--deselect", MONKEYPATCHES_COMPILED], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
