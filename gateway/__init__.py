"""pyserve-tui's engine: gateway, extension pipeline, orchestrator and serving backends.

Nothing in this package imports Textual or the ``workbench`` package.
"""

__version__ = "0.1.0"
