"""pyserve-tui's engine: gateway, extension pipeline, orchestrator and serving backends.

Nothing in this package imports Textual or the ``workbench`` package.
"""

from importlib.util import find_spec

__version__ = "0.1.0"


def build() -> str:
    """"compiled" when the request path runs compiled (a wheel built by setup.py with mypyc),
    else "interpreted"."""
    spec = find_spec("gateway.direct")
    origin = (spec.origin or "") if spec is not None else ""
    return "interpreted" if origin.endswith(".py") else "compiled"
