"""The compiled build of this checkout, for the benchmark: `setup.py`'s `HOT_PATH` through
mypyc, as `PYSERVE_TUI_COMPILE=1 pip install .` builds it, in a cache folder.

    python bench/compiled.py      # build (or find) it and print its folder

`folder()` copies `gateway/`, `workbench/` and `setup.py` to
`bench/.compiled/<key>/` and compiles there in place (`setup.py build_ext --inplace`), about
a minute on 2 cores; `key` is a hash of every copied file, mypy's version and Python's, so an
edit makes a new build and an unchanged checkout reuses the last one. A process started with
`PYTHONPATH=<folder>` runs the compiled gateway (`env()`); nothing is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".compiled"
SOURCES = ("gateway", "workbench")


def _key() -> str:
    import mypy.version

    digest = hashlib.sha256(f"{sys.version}|{mypy.version.__version__}".encode())
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    digest.update((ROOT / "setup.py").read_bytes())
    return digest.hexdigest()[:16]


def folder() -> Path:
    """The compiled build's folder (built now if this checkout has none); RuntimeError
    naming the cause when it cannot be built (mypy missing, a compiler error)."""
    try:
        key = _key()
    except ImportError:
        raise RuntimeError("the compiled build needs mypy (pip install -e '.[test]')") from None
    dest = CACHE / key
    if (dest / ".built").exists():
        return dest
    if CACHE.exists():
        shutil.rmtree(CACHE)  # one build kept: older ones are of older code
    dest.mkdir(parents=True)
    for top in SOURCES:
        shutil.copytree(ROOT / top, dest / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "setup.py", dest / "setup.py")
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy2(ROOT / "README.md", dest / "README.md")
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
        env={**os.environ, "PYSERVE_TUI_COMPILE": "1"}, capture_output=True, text=True,
        timeout=900)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-20:]
        raise RuntimeError("the compiled build failed:\n" + "\n".join(tail))
    (dest / ".built").touch()
    return dest


def env() -> dict[str, str]:
    """The environment that makes a process import the compiled build."""
    return {"PYTHONPATH": str(folder())}


if __name__ == "__main__":
    print(folder())
