"""pyserve-tui's Textual workbench: the interactive face of the engine."""
