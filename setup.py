"""The compiled build: the request hot path compiled to C with mypyc.

    pip install ".[all]"                          # a wheel: compiled when it can be
    pip install -e ".[test]"                      # development: interpreted, edits apply
    PYSERVE_TUI_COMPILE=1 pip install ".[all]"    # compiled, or fail saying why
    PYSERVE_TUI_COMPILE=0 pip install ".[all]"    # interpreted

The same modules run either way; compiled, the gateway's request path costs about half the
CPU (bench/README.md, "The compiled build"). A wheel (`pip install .`, `pip wheel .`) is
compiled unless `PYSERVE_TUI_COMPILE=0`; when it cannot be (no C compiler, no Python
headers, mypy missing), the build says why on stderr and installs the interpreted package,
which is slower and otherwise the same. An editable install is never compiled unless asked
(`PYSERVE_TUI_COMPILE=1`): a compiled module would hide edits to its source.

`HOT_PATH` is the one list of what is compiled (bench/compiled.py and
tests/test_compiled_build.py build the same list).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The modules every proxied request runs through on the built-in front's direct path (and
#: the built-in extensions of the bundled project that plan it).
HOT_PATH = [
    "gateway/servers/h1.py",
    "gateway/servers/front_ws.py",  # its session shares h1.WriteFlow
    "gateway/direct.py",
    "gateway/outbox.py",
    "gateway/pipeline.py",
    "gateway/context.py",
    "gateway/proxy/client.py",
    "gateway/proxy/headers.py",
    "gateway/proxy/http.py",
    "gateway/proxy/transport.py",
    "gateway/requestlog.py",
    "gateway/metrics.py",
    "gateway/routing/uri.py",
    "gateway/routing/upstream.py",
    "gateway/routing/locations.py",
    "gateway/routing/actions.py",
    "gateway/extensions/routing.py",
    "gateway/extensions/security.py",
    "gateway/extensions/monitoring.py",
    "gateway/extensions/orchestration.py",
    "gateway/orchestrator/lease.py",
]


def compile_setting() -> bool | None:
    """`PYSERVE_TUI_COMPILE`: True (compile, or fail), False (never), None (unset: a wheel is
    compiled when it can be)."""
    value = os.environ.get("PYSERVE_TUI_COMPILE", "").strip().lower()
    if value in ("", "auto"):
        return None
    return value not in ("0", "no", "false", "off")


#: The setup.py commands that build the package's modules (a wheel: ``bdist_wheel``), and
#: those of an editable or in-place build, which compile only when asked.
BUILDS = {"bdist_wheel", "build", "build_ext", "install"}
IN_PLACE = {"editable_wheel", "develop", "--inplace", "-i"}


def ext_modules(argv: list[str]) -> list[Any]:
    """The compiled modules this run of setup.py builds: none for the metadata steps of a
    build (setup.py runs for each), an editable install or an in-place build, unless
    `PYSERVE_TUI_COMPILE` asks; none, said on stderr, when mypyc is missing (unless asked)."""
    setting = compile_setting()
    if setting is False:
        return []
    if setting is None and (not BUILDS & set(argv) or IN_PLACE & set(argv)):
        return []
    try:
        from mypyc.build import mypycify

        return list(mypycify(HOT_PATH, opt_level="3"))
    except Exception as exc:
        if setting:
            raise
        _interpreted(exc)
        return []


def _interpreted(exc: BaseException) -> None:
    why = (str(exc).splitlines() or [""])[0][:200]
    print(f"pyserve-tui: no compiled build ({type(exc).__name__}: {why}); installing the "
          "interpreted package (slower, otherwise the same); PYSERVE_TUI_COMPILE=1 makes "
          "this an error", file=sys.stderr)


class BuildHotPath(build_ext):
    """Builds the compiled modules, or (when compiling was not asked for and fails: no C
    compiler, no Python headers) leaves the package interpreted."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if compile_setting():
                raise
            _interpreted(exc)
            self.extensions = []

    def get_outputs(self) -> list[str]:
        return list(super().get_outputs()) if self.extensions else []


setup(ext_modules=ext_modules(sys.argv[1:]), cmdclass={"build_ext": BuildHotPath})
