"""pyserve-tui\x27s Textual workbench: the interactive face of the engine."""
