"""The compiled build: the request hot path compiled to C with mypyc, when asked for.

    PYSERVE_TUI_COMPILE=1 pip install --no-build-isolation .   # needs mypy (>= 1.10)

A plain `pip install` (and the editable install of development) builds nothing: the same
modules run interpreted. The compiled build is the same code, about twice as fast on the
gateway's request path (bench/README.md, "The compiled build"); everything else in the
package stays Python. `HOT_PATH` is the one list of what is compiled (bench/compiled.py
builds the same list for the benchmark).
"""

from __future__ import annotations

import os

from setuptools import setup

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
    "gateway/requestlog.py",
    "gateway/metrics.py",
    "gateway/routing/uri.py",
    "gateway/routing/upstream.py",
    "gateway/extensions/routing.py",
    "gateway/extensions/security.py",
    "gateway/extensions/monitoring.py",
    "gateway/extensions/orchestration.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("PYSERVE_TUI_COMPILE", "") in ("", "0"):
        return []
    from mypyc.build import mypycify

    return list(mypycify(HOT_PATH, opt_level="3"))


setup(ext_modules=ext_modules())
