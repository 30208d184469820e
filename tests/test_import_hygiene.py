"""The engine runs without the UI: importing gateway never loads Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import importlib, pkgutil, sys
import gateway
for mod in pkgutil.walk_packages(gateway.__path__, "gateway."):
    importlib.import_module(mod.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "workbench"))
print(",".join(bad))
"""


def test_gateway_never_imports_textual_or_workbench() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_no_test_module_imports_a_conftest() -> None:
    # Several folders have a conftest.py; `from conftest import ...` gets whichever was
    # imported first, so a folder's tests then fail when run together with another folder.
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")
                 if any(line.startswith(("from conftest import", "import conftest"))
                        for line in path.read_text(encoding="utf-8").splitlines())]
    assert offenders == []
